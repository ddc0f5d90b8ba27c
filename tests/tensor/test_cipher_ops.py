"""Every Backend operation of the cipher backend against numpy, on real 3-party ciphertexts:
non-power-of-two shapes, batch 1, and batches spanning several ciphertexts (c = 16: b = 37 -> 3)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PACKED, TOL

from rhode.errors import ParameterError
from rhode.packing import encode_param, plan
from rhode.tensor.cipher import CipherBackend
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, PlainBatch
from rhode.tensor.poly import ChebyshevPoly

RNG = np.random.default_rng(11)
BATCHES = [1, 37]


def u(*shape):
    return RNG.uniform(-1, 1, shape)


def close(reveal, be, t, ref, tol=TOL):
    got = reveal(be, t)
    assert got.shape == np.shape(ref)
    np.testing.assert_allclose(got, ref, atol=tol, rtol=0)


@pytest.mark.parametrize("b", [1, 5, 37])
def test_affine_both_orientations_and_plain_inputs(backend, reveal, b):
    be = backend
    n, m = 3, 7
    X, H, W, U, bias = u(b, n), u(b, m), u(n, m), u(m, m), u(m)
    We, Ue, Be = be.param(W), be.param(U), be.param(bias)
    ref = X @ W + H @ U + bias
    for lay in ("C", "R"):
        He = be.encrypt_batch(H, lay)
        out = be.affine([(be.data(X), We), (He, Ue)], Be)      # plaintext X meets the layout of H
        assert out.layout == ("R" if lay == "C" else "C")
        assert be.level(out) <= be.usable
        close(reveal, be, out, ref)
    out = be.affine([(be.data(X), We)], Be)                     # plaintext only: deferred
    assert isinstance(out, CipherBatch) and out.deferred
    close(reveal, be, out, X @ W + bias)
    Xe = be.encrypt_batch(X, "C")
    close(reveal, be, be.affine([(Xe, We)]), X @ W)


@pytest.mark.parametrize("b", BATCHES)
def test_affine_t(backend, reveal, b):
    be = backend
    n, m = 6, 5
    D1, D2, W1, W2 = u(b, m), u(b, m), u(n, m), u(n, m)
    W1e, W2e = be.param(W1), be.param(W2)
    for lay in ("R", "C"):
        out = be.affine_t([(be.encrypt_batch(D1, lay), W1e), (be.encrypt_batch(D2, lay), W2e)])
        assert out.layout == ("C" if lay == "R" else "R")
        close(reveal, be, out, D1 @ W1.T + D2 @ W2.T)


@pytest.mark.parametrize("b", BATCHES)
def test_outer_and_batch_sum(backend, reveal, b):
    be = backend
    n, m = 5, 3
    X, D = u(b, n), u(b, m)
    for lx, ld in (("C", "R"), ("R", "C")):
        Xe, De = be.encrypt_batch(X, lx), be.encrypt_batch(D, ld)
        g = be.outer(Xe, De)
        assert isinstance(g, CipherParam) and g.is_pending
        close(reveal, be, g, X.T @ D)
        close(reveal, be, be.outer(be.data(X), De), X.T @ D)
        close(reveal, be, be.outer(Xe, be.data(D)), X.T @ D)
        close(reveal, be, be.batch_sum(De), D.sum(0))
    # gradient accumulation over timesteps in both layouts: pending nat + T parts, one reduction
    D2 = u(b, m)
    acc = be.add(be.outer(be.data(X), be.encrypt_batch(D, "R")),
                 be.outer(be.data(X), be.encrypt_batch(D2, "C")))
    assert set(acc.pending) == {"nat", "T"}
    close(reveal, be, acc, X.T @ (D + D2))
    mixed = be.add(be.encrypt_batch(D, "R"), be.encrypt_batch(D2, "C"))
    assert set(mixed.parts) == {"R", "C"}                        # lazy: no conversion yet
    close(reveal, be, be.batch_sum(mixed), (D + D2).sum(0))


@pytest.mark.parametrize("b", BATCHES)
def test_elementwise_layouts_and_data(backend, reveal, b):
    be = backend
    n = 6
    A, B, P, bias = u(b, n), u(b, n), u(b, n), u(n)
    Ar, Bc, Be_ = be.encrypt_batch(A, "R"), be.encrypt_batch(B, "C"), be.param(bias)
    close(reveal, be, be.add(Ar, Bc), A + B)
    close(reveal, be, be.sub(Ar, Bc), A - B)
    close(reveal, be, be.mul(Ar, Bc), A * B)                     # converts the older operand
    close(reveal, be, be.mul(Ar, be.encrypt_batch(B, "R")), A * B)
    close(reveal, be, be.sub(be.data(P), Ar), P - A)
    close(reveal, be, be.sub(Ar, be.data(P)), A - P)
    close(reveal, be, be.add(be.data(P), Bc), P + B)
    close(reveal, be, be.mul(be.data(P), Bc), P * B)
    close(reveal, be, be.add(Ar, Be_), A + bias)
    close(reveal, be, be.sub(Bc, Be_), B - bias)
    close(reveal, be, be.sub(Be_, Bc), bias - B)
    close(reveal, be, be.add(be.data(P), Be_), P + bias)         # plaintext + bias: deferred layout
    close(reveal, be, be.neg(be.add(Ar, Bc)), -(A + B))
    close(reveal, be, be.scale(be.add(Ar, Bc), 0.3), 0.3 * (A + B))
    close(reveal, be, be.add_const(be.add(Ar, Bc), 0.25), A + B + 0.25)
    close(reveal, be, be.add_const(Ar, -0.5), A - 0.5)
    out = be.mul(be.data(P), be.data(A))
    assert isinstance(out, PlainBatch)
    np.testing.assert_allclose(out.array, P * A)


def test_conversions_are_cached(backend, reveal):
    be = backend
    A, B = u(37, 5), u(37, 5)
    Ar = be.encrypt_batch(A, "R")
    be.mul(Ar, be.encrypt_batch(B, "C"))                         # Ar converted to C and cached
    assert set(Ar.full) == {"R", "C"}
    be.reset_counters()
    be.mul(be.encrypt_batch(B, "C"), Ar)
    assert "convert" not in be.counters()["by_op"]


def test_parameter_ops(backend, reveal, collective):
    be = backend
    W, V = u(4, 7), u(4, 7)
    We, Ve = be.param(W), be.param(V)
    close(reveal, be, be.add(We, Ve), W + V)
    close(reveal, be, be.sub(We, Ve), W - V)
    close(reveal, be, be.mul(We, Ve), W * V)
    close(reveal, be, be.scale(We, -0.7), -0.7 * W)
    close(reveal, be, be.neg(We), -W)
    close(reveal, be, be.add_const(We, 0.5), W + 0.5)
    # a T-only parameter (a gradient of the head) combines with a nat one, exports as nat
    X, D = u(9, 4), u(9, 7)
    gT = be.outer(be.encrypt_batch(X, "R"), be.encrypt_batch(D, "C"))
    upd = be.sub(We, be.scale(gT, 0.1))
    close(reveal, be, upd, W - 0.1 * X.T @ D)
    (ct,) = be.export_param(upd)
    back = be.import_param([ct], (4, 7))
    close(reveal, be, back, W - 0.1 * X.T @ D)
    # a reduced gradient is exactly zero outside the parameter's region (padded weights stay zero)
    (vec,) = collective.decrypt(be.export_param(be.outer(be.data(X), be.encrypt_batch(D, "R"))))
    region = encode_param(PACKED, np.ones((4, 7))) > 0
    assert np.abs(vec[~region]).max() < TOL


@pytest.mark.parametrize("kind", ["tanh5", "sigmoid7", "deriv4", "cheb_fallback"])
def test_poly(backend, reveal, kind):
    be = backend
    A = u(37, 6) * 3.5
    p = {
        "tanh5": ChebyshevPoly.fit(np.tanh, -4, 4, 5),
        "sigmoid7": ChebyshevPoly.fit(lambda x: 1 / (1 + np.exp(-x)), -4, 4, 7),
        "deriv4": ChebyshevPoly.fit(np.tanh, -4, 4, 5).derivative(),
        # badly conditioned in the power basis: evaluated by OpenFHE's Chebyshev series
        "cheb_fallback": ChebyshevPoly.fit(np.tanh, -4, 20, 13),
    }[kind]
    pp, cost = be.poly_plan(p)
    assert pp.kind == ("chebyshev" if kind == "cheb_fallback" else "power")
    Ae = be.encrypt_batch(A, "C")
    out = be.poly(Ae, p)
    assert be.level(out) == cost
    close(reveal, be, out, p(A))
    W = u(3, 5) * 3.5
    close(reveal, be, be.poly(be.param(W), p), p(W))


def test_poly_levels_power_basis(backend):
    be = backend
    levels = {d: be.poly_plan(ChebyshevPoly.fit(np.tanh, -4, 4, d))[1] for d in (1, 3, 5, 7, 9, 15)}
    assert levels == {1: 1, 3: 2, 5: 3, 7: 3, 9: 4, 15: 4}     # floor(log2 d) + 1


def test_powers_shared_between_activation_and_derivative(backend):
    be = backend
    p = ChebyshevPoly.fit(np.tanh, -4, 4, 5)
    Ae = be.encrypt_batch(u(5, 4), "R")
    be.reset_counters()
    be.poly(Ae, p)
    first = be.counters()["total"]["ct_ct_mults"]
    be.reset_counters()
    be.poly(Ae, p.derivative())
    assert be.counters()["total"]["ct_ct_mults"] < first


def test_encrypt_inputs_and_decode(backend, reveal):
    be = backend
    xs = [u(37, 3) for _ in range(3)]
    enc = be.encrypt_inputs(xs)
    assert [t.layout for t in enc] == ["C", "R", "C"]
    assert len(enc[0].parts["C"]) == PACKED.n_chunks(37) == 3
    for t, x in zip(enc, xs, strict=True):
        close(reveal, be, t, x)


def test_errors(backend, evaluator, collective):
    be = backend
    with pytest.raises(ParameterError, match="rotation keys"):
        CipherBackend(evaluator, plan(32, 4, PACKED.slots), collective.refresh)
    We = be.param(u(3, 4))
    with pytest.raises(ParameterError, match="cannot multiply"):
        be.affine([(be.data(u(2, 5)), We)])
    with pytest.raises(ParameterError):
        be.affine([])
    with pytest.raises(ParameterError):
        be.add(be.encrypt_batch(u(2, 4), "R"), be.param(u(3)))
    with pytest.raises(ParameterError):
        be.mul(be.encrypt_batch(u(2, 4), "R"), We)
    with pytest.raises(ParameterError, match="polynomial"):
        be.poly(be.encrypt_batch(u(2, 4), "R"), np.tanh)
