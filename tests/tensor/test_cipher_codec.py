"""rhode.tensor.codec on real ciphertexts: exports never spend levels (they refuse unready tensors),
prepare_export is the one step that does, and imports round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PACKED, TOL

from rhode.errors import ParameterError, SerializationError
from rhode.packing import Layout, input_layout
from rhode.tensor import codec

RNG = np.random.default_rng(23)


def u(*shape):
    return RNG.uniform(-1, 1, shape)


def spent(be) -> dict:
    """Counts since the last reset, without the zeros."""
    return {k: v for k, v in be.counters()["total"].items() if v}


def test_pending_gradient_needs_prepare(backend, collective):
    be = backend
    X, D = u(9, 4), u(9, 3)
    g = be.outer(be.encrypt_batch(X, "R"), be.encrypt_batch(D, "C"))     # pending, T part only
    assert g.pending and not codec.export_ready(g)
    be.reset_counters()
    for fn in (codec.export_param, codec.ciphertexts, codec.forms):
        with pytest.raises(ParameterError, match="prepare_export"):
            fn(g)
    assert spent(be) == {}                                  # refusing costs nothing
    assert codec.prepare_export(be, [g]) == [g]
    by_op = be.counters()["by_op"]
    assert "batch_reduce" in by_op and "transpose" in by_op   # T-only: reduced in T, then nat
    assert codec.export_ready(g) and be.level(g) == 3
    be.reset_counters()
    assert codec.prepare_export(be, [g]) == []              # cached: the second time is free
    (ct,) = codec.export_param(g)
    assert spent(be) == {}
    got = codec.decode_param(PACKED, collective.decrypt([ct])[0], (4, 3))
    np.testing.assert_allclose(got, X.T @ D, atol=TOL, rtol=0)


def test_export_refresh_only_in_prepare(backend):
    be = backend
    w = be.param(u(5, 5) * 0.5)
    be.add_forms(w, ["T"])
    wt = be.import_forms({"T": w.forms["T"]}, (5, 5))       # a T-only parameter ...
    while be.level(wt) < be.usable:
        wt = be.scale(wt, 1.001)                             # 1 level each, never due
    assert be.level(wt) == be.usable                         # ... at the end of its levels
    be.reset_counters()
    with pytest.raises(ParameterError):
        codec.export_param(wt)
    assert spent(be) == {}
    codec.prepare_export(be, [wt])
    t = be.counters()["total"]
    assert t["refreshes"] == 1 and be.level(wt) == 1        # refreshed, then transposed
    be.reset_counters()
    codec.export_param(wt)
    assert spent(be) == {}


def test_backend_export_param_is_prepare_then_export(backend):
    be = backend
    X, D = u(6, 4), u(6, 3)
    g1 = be.outer(be.encrypt_batch(X, "C"), be.encrypt_batch(D, "R"))
    g2 = be.outer(be.encrypt_batch(X, "C"), be.encrypt_batch(D, "R"))
    be.prepare([(4, 3)])                                     # masks encoded once, for both
    be.reset_counters()
    be.export_param(g1)
    old = be.counters()
    be.reset_counters()
    codec.prepare_export(be, [g2])
    codec.export_param(g2)
    assert be.counters() == old and old["total"]["rotations"] > 0


def test_batch_export_and_import(backend, collective):
    be = backend
    W, X = u(4, 3), u(20, 4)
    d = be.affine([(be.data(X), be.param(W))])               # deferred: no layout yet
    assert not codec.export_ready(d)
    with pytest.raises(ParameterError):
        codec.ciphertexts(d)
    assert codec.export_layout(d) == "R"                     # what prepare_export will resolve
    codec.prepare_export(be, [d])
    assert codec.export_ready(d) and be.export_layout(d) == be._export_layout(d) == "R"
    cts = codec.ciphertexts(d)
    np.testing.assert_allclose(codec.decode(PACKED, d, collective.decrypt(cts)), X @ W, atol=TOL, rtol=0)
    back = codec.import_batch(be, cts, (20, 3), "R")
    assert back.layout == Layout.R and back.seq > d.seq
    np.testing.assert_allclose(be.decode(back, collective.decrypt(be.ciphertexts(back))), X @ W,
                               atol=TOL, rtol=0)
    x0 = be.encrypt_batch(X, input_layout(0))
    assert be.import_batch(codec.ciphertexts(x0), X.shape, input_layout(0)).layout == "C"


def test_import_errors(backend):
    be = backend
    cts = codec.ciphertexts(be.encrypt_batch(u(20, 2), "C"))     # 2 chunks of 16
    with pytest.raises(SerializationError, match="unknown layout"):
        codec.import_batch(be, cts, (20, 2), "X")
    with pytest.raises(SerializationError, match="needs 2 ciphertexts"):
        codec.import_batch(be, cts[:1], (20, 2), "C")
    with pytest.raises(SerializationError, match="positive"):
        codec.import_batch(be, cts, (0, 2), "C")
    with pytest.raises(ParameterError, match="one ciphertext"):
        codec.import_param(be, cts, (2, 2))
    with pytest.raises(ParameterError, match="nat or T"):
        codec.import_forms(be, {"diag": cts[0]}, (2,))
