"""Packing index arithmetic, checked against numpy with a slot-vector simulation (np.roll as the
CKKS rotation): every product, conversion, batch sum and the transposition schedule."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.errors import DataError, ParameterError
from rhode.packing import (
    PackingPlan,
    decode_batch,
    decode_param,
    encode_batch,
    encode_param,
    mask,
    plan,
    rotate,
    valid_region,
)

RNG = np.random.default_rng(7)


def rotsum(v, offsets):
    for r in offsets:
        v = v + rotate(v, r)
    return v


def test_plan_geometry_and_errors():
    p = plan(5, 8, 4096)
    assert (p.H, p.c, p.block, p.copies) == (8, 8, 512, 8)
    assert plan(16, 100, 4096).c == 16            # capped by slots / H^2
    assert plan(16, 100, 4096, naive=True).c == 1
    assert plan(1, 1, 4096).H == 2
    assert p.n_chunks(17) == 3
    with pytest.raises(ParameterError, match="larger ring"):
        plan(65, 4, 4096)
    with pytest.raises(ParameterError):
        plan(0, 4, 4096)
    with pytest.raises(ParameterError):
        plan(4, 0, 4096)
    with pytest.raises(ParameterError):
        PackingPlan(16, 32, 4096)


@pytest.mark.parametrize("layout", ["R", "C"])
@pytest.mark.parametrize("b,n", [(1, 1), (5, 3), (8, 8), (19, 6)])
def test_batch_roundtrip(layout, b, n):
    p = plan(8, 8, 4096)
    V = RNG.uniform(-1, 1, (b, n))
    vecs = encode_batch(p, V, layout)
    assert len(vecs) == p.n_chunks(b) and vecs[0].shape == (4096,)
    np.testing.assert_array_equal(decode_batch(p, vecs, layout, b, n), V)
    I, J, K = np.meshgrid(np.arange(8), np.arange(8), np.arange(8), indexing="ij")
    blk = vecs[0][: p.block].reshape(8, 8, 8)             # (i, j, k)
    feat = J if layout == "R" else I
    ok = (feat < n) & (min(b, 8) > K)
    np.testing.assert_array_equal(blk[ok], V[K[ok], feat[ok]])
    assert np.all(blk[~ok] == 0)
    np.testing.assert_array_equal(vecs[0][p.block: 2 * p.block], vecs[0][: p.block])


@pytest.mark.parametrize("shape", [(3, 5), (8, 8), (7,), (1, 1)])
@pytest.mark.parametrize("form", ["nat", "T"])
def test_param_roundtrip(shape, form):
    p = plan(8, 4, 4096)
    W = RNG.uniform(-1, 1, shape)
    v = encode_param(p, W, form)
    np.testing.assert_array_equal(decode_param(p, v, shape, form), W)
    # replicated over k
    blk = v[: p.block].reshape(8, 8, p.c)
    assert np.all(blk == blk[:, :, :1])
    # valid region mask covers exactly the nonzero support
    assert np.all(v * (1 - mask(p, **valid_region(shape, form))) == 0)


def test_bad_inputs():
    p = plan(4, 4, 4096)
    with pytest.raises(DataError):
        encode_batch(p, np.ones((2, 5)), "R")
    with pytest.raises(DataError):
        encode_batch(p, np.full((2, 2), np.nan), "R")
    with pytest.raises(DataError):
        encode_param(p, np.ones((5, 2)))


@pytest.mark.parametrize("b,n,m", [(3, 5, 6), (16, 8, 3), (1, 2, 8)])
def test_products_and_layout_alternation(b, n, m):
    p = plan(8, 16, 8192)
    X = RNG.uniform(-1, 1, (b, n))
    W = RNG.uniform(-1, 1, (n, m))
    bias = RNG.uniform(-1, 1, m)
    wn, wt, bn = encode_param(p, W, "nat"), encode_param(p, W, "T"), encode_param(p, bias, "nat")
    # C input x W_nat, sum over i -> R (+ bias nat)
    out = [rotsum(x * wn, p.sum_i) + bn for x in encode_batch(p, X, "C")]
    np.testing.assert_allclose(decode_batch(p, out, "R", b, m), X @ W + bias, atol=1e-12)
    # R input x W_T (+ diag-masked bias), sum over j, mask j = 0, replicate over j -> C
    bdiag = bn * mask(p, diag=True)
    out = [rotsum(rotsum(x * wt + bdiag, p.sum_j) * mask(p, j0=True), p.rep_j)
           for x in encode_batch(p, X, "R")]
    np.testing.assert_allclose(decode_batch(p, out, "C", b, m), X @ W + bias, atol=1e-12)
    blk = out[0][: p.block].reshape(8, 8, p.c)                # replicated over j in every slot
    np.testing.assert_allclose(blk, np.repeat(blk[:, :1], 8, axis=1), atol=1e-12)
    # affine_t: D (b, m) @ W.T; D in R x W_nat -> C ; D in C x W_T -> R
    D = RNG.uniform(-1, 1, (b, m))
    out = [rotsum(rotsum(d * wn, p.sum_j) * mask(p, j0=True), p.rep_j) for d in encode_batch(p, D, "R")]
    np.testing.assert_allclose(decode_batch(p, out, "C", b, n), D @ W.T, atol=1e-12)
    out = [rotsum(d * wt, p.sum_i) for d in encode_batch(p, D, "C")]
    np.testing.assert_allclose(decode_batch(p, out, "R", b, n), D @ W.T, atol=1e-12)


@pytest.mark.parametrize("b", [1, 5, 16, 37])
def test_outer_and_batch_sum(b):
    p = plan(8, 16, 8192)
    n, m = 5, 7
    X, D = RNG.uniform(-1, 1, (b, n)), RNG.uniform(-1, 1, (b, m))
    k0 = mask(p, k0=True)
    # x in C, d in R -> nat; x in R, d in C -> T ; chunks summed slot-wise first
    for lx, ld, form in (("C", "R", "nat"), ("R", "C", "T")):
        acc = sum(x * d for x, d in zip(encode_batch(p, X, lx), encode_batch(p, D, ld), strict=True))
        g = rotsum(rotsum(acc, p.sum_k) * k0, p.rep_k)
        np.testing.assert_allclose(g, encode_param(p, X.T @ D, form), atol=1e-12)
    for ld, form in (("R", "nat"), ("C", "T")):
        acc = sum(encode_batch(p, D, ld))
        g = rotsum(rotsum(acc, p.sum_k) * k0, p.rep_k)
        np.testing.assert_allclose(g, encode_param(p, D.sum(0), form), atol=1e-12)


def test_layout_conversions():
    p = plan(8, 4, 4096)
    V = RNG.uniform(-1, 1, (4, 6))
    c_, r_ = encode_batch(p, V, "C")[0], encode_batch(p, V, "R")[0]
    dg = mask(p, diag=True)
    np.testing.assert_allclose(rotsum(c_ * dg, p.sum_i), r_, atol=1e-12)                     # C -> R
    np.testing.assert_allclose(rotsum(rotsum(r_ * dg, p.sum_j) * mask(p, j0=True), p.rep_j), c_,
                               atol=1e-12)                                                    # R -> C


def transpose_sim(p, x, extra=None):
    t = p.transpose
    babies = [rotate(x, r) for r in t.baby]
    out = np.zeros_like(x)
    for a, G in enumerate(t.giant):
        inner = np.zeros_like(x)
        for aa, bb, delta in t.terms:
            if aa != a:
                continue
            m = mask(p, delta=delta) * (1 if extra is None else extra)
            inner = inner + babies[bb] * rotate(m, t.baby[bb])
        out = out + rotate(inner, G)
    return out


@pytest.mark.parametrize("H,c", [(2, 1), (4, 2), (8, 8), (16, 4), (32, 1)])
def test_transposition_bsgs(H, c):
    p = PackingPlan(H, c, 8192)
    W = RNG.uniform(-1, 1, (H - 1, H))
    np.testing.assert_allclose(transpose_sim(p, encode_param(p, W, "nat")), encode_param(p, W, "T"),
                               atol=1e-12)
    t = p.transpose
    assert len(t.terms) == 2 * H - 1
    n_rot = (t.g - 1) + sum(1 for g in t.giant if g)
    assert n_rot <= 3 * np.sqrt(2 * H)              # ~2 sqrt(2H), far below 2H - 2


def test_rotation_indices_minimal_and_logarithmic():
    p = plan(16, 16, 4096)
    idx = p.rotation_indices()
    assert 0 not in idx and len(idx) == len(set(idx))
    assert all(-p.slots // 2 < r <= p.slots // 2 for r in idx)
    used = set(p.sum_i) | set(p.sum_j) | set(p.rep_j) | set(p.sum_k) | set(p.rep_k)
    used |= set(p.transpose.baby) | set(p.transpose.giant)
    assert set(idx) == used - {0}
    assert len(p.sum_i) == len(p.sum_j) == 4 and len(p.sum_k) == 4
    assert len(plan(16, 16, 4096, naive=True).sum_k) == 0
