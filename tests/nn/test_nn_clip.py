"""Clipping approximations: zero in, zero out; documented error bounds on [-B, B]; lr folded in."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.nn import TrainConfig, make_clipper
from rhode.nn.activations import sigmoid_poly, tanh_poly

# Max |approx - clip_c| on [-B, B] for c = 1, B = 4 (docs/approximations.md lists the measured values,
# rounded up here).
DOCUMENTED = {("poly", 5): 0.30, ("poly", 7): 0.095, ("poly", 15): 0.083,
              ("tanh", 5): 0.25, ("tanh", 7): 0.22, ("tanh", 15): 0.24,
              ("abs", 5): 0.21, ("abs", 7): 0.15, ("abs", 15): 0.078}


@pytest.mark.parametrize(("kind", "degree"), sorted(DOCUMENTED))
def test_clip_error_within_documented_bound(kind: str, degree: int) -> None:
    lr = 0.05
    clip = make_clipper(TrainConfig(lr, 8, 1, clip=kind, clip_value=1.0, clip_bound=4.0, clip_degree=degree))
    g = np.linspace(-4.0, 4.0, 20001)
    err = np.max(np.abs(clip(g) / lr - np.clip(g, -1.0, 1.0)))
    assert err <= DOCUMENTED[(kind, degree)]
    # and it does clip: far from zero the output is bounded near c, not g
    assert abs(clip(np.array([4.0]))[0] / lr) < 1.0 + DOCUMENTED[(kind, degree)]


@pytest.mark.parametrize("kind", ["none", "poly", "tanh", "abs"])
@pytest.mark.parametrize("degree", [3, 5, 9])
def test_zero_gradient_gives_exactly_zero(kind: str, degree: int) -> None:
    clip = make_clipper(TrainConfig(0.3, 8, 1, clip=kind, clip_value=0.7, clip_bound=2.5,
                                    clip_degree=degree))
    g = np.array([[0.0, 0.5], [-0.5, 0.0]])
    out = clip(g)
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0
    np.testing.assert_allclose(out[0, 1], -out[1, 0], rtol=1e-12, atol=1e-15)   # odd


def test_none_is_plain_sgd() -> None:
    clip = make_clipper(TrainConfig(0.3, 8, 1, clip="none"))
    g = np.array([-7.0, 0.1, 3.0])
    np.testing.assert_array_equal(clip(g), 0.3 * g)


def test_learning_rate_is_folded_linearly() -> None:
    g = np.linspace(-3, 3, 101)
    for kind in ("poly", "tanh", "abs"):
        a = make_clipper(TrainConfig(0.1, 8, 1, clip=kind))(g)
        b = make_clipper(TrainConfig(0.4, 8, 1, clip=kind))(g)
        np.testing.assert_allclose(b, 4 * a, rtol=1e-9, atol=1e-14)


def test_activation_polys_odd_and_accurate() -> None:
    x = np.linspace(-4, 4, 2001)
    p, s = tanh_poly(4.0, 5), sigmoid_poly(4.0, 5)
    assert p(np.zeros(1))[0] == 0.0 and s(np.zeros(1))[0] == 0.5
    assert all(c == 0.0 for c in p.coeffs[0::2]) and all(c == 0.0 for c in s.coeffs[2::2])
    assert np.max(np.abs(p(x) - np.tanh(x))) < 0.125
    assert np.max(np.abs(s(x) - 1 / (1 + np.exp(-x)))) < 8.5e-3
