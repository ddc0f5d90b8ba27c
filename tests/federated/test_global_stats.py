"""Global normalization statistics computed under encryption equal the plaintext ones."""

from __future__ import annotations

import numpy as np

from rhode.data import Normalizer, TimeSeries, local_stats
from rhode.federated.dataprep import encrypted_global_stats
from rhode.mhe import LocalCollective, preset


def test_encrypted_global_stats_match_plaintext():
    rng = np.random.default_rng(0)
    series = []
    for i in range(3):  # large offsets and small spread: the case where E[x^2] - mean^2 cancels
        vals = np.column_stack([30000 + 5000 * i + 800 * rng.normal(size=200 + 50 * i),
                                0.01 * rng.normal(size=200 + 50 * i)])
        series.append(TimeSeries.from_arrays(vals, ["demand", "noise"], "demand"))
    coll = LocalCollective(preset("test"), 3)
    calls = []

    def secure_sum(vectors):
        calls.append(len(vectors))
        cts = [coll.encrypt(v) for v in vectors]
        assert all(np.max(np.abs(v)) <= 1.0 for v in vectors)  # slots stay in [-1, 1]
        total = cts[0]
        for ct in cts[1:]:
            total = coll.context.cc.EvalAdd(total, ct)
        return coll.decrypt([total], length=len(vectors[0]))[0]

    enc = Normalizer.from_stats(encrypted_global_stats(series, secure_sum))
    plain = Normalizer.from_stats(sum(local_stats(s) for s in series))
    assert calls == [3, 3]
    np.testing.assert_allclose(enc.mean, plain.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(enc.std, plain.std, rtol=1e-4)
