"""The one protocol carried by the in-process engines equals the plaintext mirror (same polynomials,
seed, batches, FedAvg weights and loss batches) on real OpenFHE ciphertexts (insecure `test` preset,
small dimensions): RNN (3 global iterations), GRU and LSTM (2) with N = 3 data holders on the
sequential engine, the parallel engine with fewer workers than holders, 10 holders, the global
statistics, and a querier's prediction that only the querier can decrypt.

Tolerance: TOL = 1e-3 on weights and predictions. The `test` preset's refreshes re-encrypt at a
40-bit scale and the flooded decryption leaves about 2^-20 relative error per revealed value
(docs/security.md); over 3 iterations the mirror gap measured ~1e-6, so 1e-3 is far from both the
noise and from a wrong computation (a model that did not train moves by > 1e-2).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import Normalizer, Stats
from rhode.errors import ParameterError, RhodeError
from rhode.federated.budget import Reveal
from rhode.federated.config import RunConfig, model_configs
from rhode.federated.dataprep import load_holders, stat_values, window_holders
from rhode.federated.engine import Federation
from rhode.federated.mirror import plain_fedavg, plain_loss, predict_plain
from rhode.federated.run import n_workers
from rhode.federated.schema import Step
from rhode.mhe import preset
from rhode.nn.model import RecurrentModel

TOL = 1e-3


def _config(**over) -> RunConfig:
    base = dict(dataset="electricity", max_rows=600, parties=3, cell="rnn", hidden=3, timesteps=3, batch=8,
                learning_rate=0.7, local_steps=1, global_iterations=3, preset="test", seed=11)
    base.update(over)
    return RunConfig(**base).validate()


def _train(cfg: RunConfig, workers: int = 1, rotations_per_round: int | None = None):
    """Encrypted training through a Federation; the decrypted model and encrypted loss after every
    iteration, the mirror, and the federation (left open: close it). ``rotations_per_round``: rotation
    keys made in chunks of that many (as a large ring's are)."""
    holders = load_holders(cfg)
    fed = Federation(cfg, [h.train for h in holders], workers=workers)
    if rotations_per_round:
        fed.agg.rotation_round_bytes = rotations_per_round * preset(cfg.preset).rotation_key_bytes
    stats = fed.keygen(inspect=200)  # the tests decrypt the model after every iteration
    window_holders(holders, Normalizer.from_stats(stats), cfg)
    parties = [(h.X, h.Y) for h in holders]
    poly, _, train_cfg = model_configs(cfg, holders[0].train.n_features)
    model = RecurrentModel(poly)
    mirror = plain_fedavg(model, train_cfg, parties, cfg, [float(len(X)) for X, _ in parties])
    enc = fed.agg.encrypt_model(model.init_params(cfg.seed))
    decrypted, losses = [], []
    for it in range(cfg.global_iterations):
        enc, rec = fed.agg.iteration(it, enc, stats)
        decrypted.append(fed.agg.decrypt_model(enc))
        losses.append((rec.loss, plain_loss(model, mirror[it + 1], parties, cfg, it)))
    return {"fed": fed, "enc": enc, "decrypted": decrypted, "losses": losses, "mirror": mirror,
            "model": model, "parties": parties, "holders": holders, "stats": stats}


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_sequential_engine_equals_mirror(cell):
    # CI time: GRU/LSTM 1 iteration (the cells' BPTT; the iterations' mechanics are the RNN's 3)
    r = _train(_config(cell=cell, global_iterations=3 if cell == "rnn" else 1))
    try:
        for it, dec in enumerate(r["decrypted"]):  # every iteration, not only the last
            assert _max_diff(dec, r["mirror"][it + 1]) <= TOL, (cell, it)
        for enc_loss, mirror_loss in r["losses"]:
            assert abs(enc_loss - mirror_loss) <= TOL
        assert _max_diff(r["mirror"][-1], r["mirror"][0]) > 1e-2  # the model moved
        # the loss after iteration k rides on iteration k+1's TRAIN job (its first forward pass): one
        # TRAIN round per iteration, and a LOSS job only after the last one
        steps = [x.step for x in r["fed"].transport.rounds]
        assert steps.count(Step.TRAIN.value) == len(r["losses"]) + 1
        assert steps.count(Step.DECRYPT.value) >= len(r["losses"])
        # a querier's prediction: only the querier can decrypt, and it equals the mirror's
        Xq = r["parties"][1][0][:5]
        yhat, switched, querier = r["fed"].predict_encrypted(r["enc"], Xq)
        got = r["fed"].agg.backend.decode(yhat, querier.decrypt(switched))
        want = predict_plain(r["model"], r["mirror"][-1], Xq)
        assert got.shape == want.shape == (5, 1)
        assert float(np.max(np.abs(got - want))) <= TOL
        try:  # the data holders together cannot decrypt the switched result
            wrong = r["fed"].agg.backend.decode(yhat, r["fed"].agg.decrypt(switched, Reveal.PREDICTION))
            assert float(np.max(np.abs(wrong - want))) >= 1e-1
        except RhodeError:
            pass  # OpenFHE may refuse to fuse shares of a foreign-key ciphertext
    finally:
        r["fed"].close()


@pytest.mark.slow
def test_parallel_engine_equals_sequential_and_mirror():
    cfg = _config(global_iterations=2)
    seq = _train(cfg)
    par = _train(cfg, workers=2, rotations_per_round=4)  # 2 workers for 3 holders: one trains two
    try:
        assert len(par["fed"].agg.rotation_chunks) >= 3 and len(seq["fed"].agg.rotation_chunks) == 1
        for it in range(cfg.global_iterations):
            assert _max_diff(par["decrypted"][it], seq["decrypted"][it]) <= TOL
            assert _max_diff(par["decrypted"][it], par["mirror"][it + 1]) <= TOL
        # the first loss rode on iteration 2's training job, its part sent by the workers as bytes
        for enc_loss, mirror_loss in par["losses"]:
            assert abs(enc_loss - mirror_loss) <= TOL
        assert par["fed"].pool.n_workers == 2
    finally:
        seq["fed"].close()
        par["fed"].close()


@pytest.mark.slow
def test_global_statistics_and_ten_holders():
    cfg = _config(parties=10, max_rows=2000, hidden=2, timesteps=2, batch=4, global_iterations=1)
    r = _train(cfg)
    try:
        values = [stat_values(h.train) for h in r["holders"]]
        rows = float(sum(len(v) for v in values))
        mean = np.concatenate(values).mean(axis=0)
        var = np.concatenate(values).var(axis=0)
        s: Stats = r["stats"]
        assert s.count == rows
        np.testing.assert_allclose(s.sum / rows, mean, atol=1e-4 * max(1.0, float(np.max(np.abs(mean)))))
        np.testing.assert_allclose(s.sumsq / rows - (s.sum / rows) ** 2, var, rtol=1e-3)
        assert _max_diff(r["decrypted"][0], r["mirror"][1]) <= TOL
    finally:
        r["fed"].close()


def test_worker_count_resolution():
    import os
    cores = len(os.sched_getaffinity(0))
    assert n_workers(1, 5) == 1
    assert n_workers(4, 3) == 3  # at most one per data holder
    assert n_workers(0, 64) == min(64, 2 * cores)  # at most two per core
    assert n_workers(0, 2) == min(2, 2 * cores)  # one per holder
    with pytest.raises(ParameterError, match="workers"):
        Federation(_config(), [None] * 3, workers=4)


@pytest.mark.slow
def test_resume_sends_only_c0_and_names_its_refresh_round():
    """A refreshed ciphertext's c1 is its refresh request's CRP, which every holder received: RESUME
    carries only the c0 parts (one-element ciphertexts, about half the bytes of the refreshed
    ciphertexts), and the holder rejoins them with the CRPs of the refresh round the request names; a
    RESUME naming another round is refused with a ProtocolError (the model still equals the mirror:
    test_sequential_engine_equals_mirror)."""
    from rhode.errors import ProtocolError
    from rhode.federated.payload import Payload
    from rhode.federated.schema import Field

    cfg = _config(global_iterations=1)
    holders = load_holders(cfg)
    with Federation(cfg, [h.train for h in holders]) as fed:
        stats = fed.keygen()
        seen, handle = [], fed.transport.handlers[1]

        def spy(step, p):
            if step is Step.RESUME:
                seen.append(p)
            return handle(step, p)

        fed.transport.handlers[1] = spy
        enc = fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed))
        fed.agg.iteration(0, enc, stats, loss=False)
        assert seen
        for p in seen:
            cts = p.blobs[Field.CTS.value].value
            assert len(cts) == p.get(Field.COUNT.value, int) > 0
            assert all(ct.NumberCiphertextElements() == 1 for ct in cts)
        resumes = [r for r in fed.transport.rounds if r.step == Step.RESUME.value]
        refreshes = [r for r in fed.transport.rounds if r.step == Step.REFRESH.value]
        assert len(resumes) == len(refreshes) - 1  # the last refresh: the new model (the aggregator's)
        stale = Payload({**seen[-1].config, Field.REFRESH_TAG.value: "another-round"}, seen[-1].blobs)
        with pytest.raises(ProtocolError, match="not the last one it answered"):
            handle(Step.RESUME, stale)
