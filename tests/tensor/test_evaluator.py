"""The secret-free evaluator facade (rhode.mhe.evaluator) on 3-party ciphertexts: levels, counters,
hoisted rotations, one-relinearization sums, Chebyshev convention, power-basis polynomial levels."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.tensor.cipher_poly import eval_power, plan_poly, power_levels
from rhode.tensor.poly import ChebyshevPoly

RNG = np.random.default_rng(4)


@pytest.fixture
def vals(evaluator):
    return RNG.uniform(-1, 1, evaluator.slots), RNG.uniform(-1, 1, evaluator.slots)


def dec(collective, ct):
    return collective.decrypt([ct])[0]


def test_levels_and_counters(evaluator, collective, vals):
    ev = evaluator
    x, y = vals
    a, b = ev.encrypt(x), ev.encrypt(y)
    ev.reset_counts()
    m = ev.mul(a, b)
    assert ev.level(m) == 1 and ev.level(ev.add(m, a)) == 1
    assert ev.level(ev.mul_const(a, 1.0)) == 0 and ev.level(ev.mul_const(a, -1.0)) == 0
    c = ev.mul_const(m, 0.5)                       # consumes the pending rescale of m
    assert ev.level(c) == 2
    assert ev.counts["ct_ct_mults"] == 1 and ev.counts["const_mults"] == 1
    assert ev.counts["rescalings"] == 1
    np.testing.assert_allclose(dec(collective, c), 0.5 * x * y, atol=1e-5)
    p = ev.mul_plain(a, ev.encode(y))
    np.testing.assert_allclose(dec(collective, ev.sub_plain(ev.add_const(p, 0.25), ev.encode(x))),
                               x * y + 0.25 - x, atol=1e-5)


def test_mul_sum_single_relinearization(evaluator, collective, vals):
    ev = evaluator
    x, y = vals
    a, b = ev.encrypt(x), ev.encrypt(y)
    ev.reset_counts()
    s = ev.mul_sum([(a, b), (a, a), (b, b)], [(a, ev.encode(y))])
    assert ev.counts["relinearizations"] == 1 and ev.counts["ct_ct_mults"] == 3
    np.testing.assert_allclose(dec(collective, s), x * y + x * x + y * y + x * y, atol=1e-5)


def test_rotations_hoisted_equal_plain(evaluator, collective, vals):
    ev = evaluator
    x, _ = vals
    a = ev.encrypt(x)
    offs = [r for r in sorted(collective.context.rotation_indices)][:3] + [0]
    ev.reset_counts()
    hoisted = ev.rotate_hoisted(a, offs)
    assert ev.counts["hoisted_rotations"] == 3
    for r, ct in zip(offs, hoisted, strict=True):
        np.testing.assert_allclose(dec(collective, ct), np.roll(x, -r), atol=1e-5)
    s = ev.rotate_sum(a, offs[:2])
    ref = x + np.roll(x, -offs[0])
    np.testing.assert_allclose(dec(collective, s), ref + np.roll(ref, -offs[1]), atol=1e-5)


def test_chebyshev_numpy_convention(evaluator, collective):
    ev = evaluator
    x = np.linspace(-3.9, 19.9, ev.slots)
    p = ChebyshevPoly.fit(np.tanh, -4, 20, 9)
    out = ev.chebyshev(ev.encrypt(x), p.coeffs, p.a, p.b)
    np.testing.assert_allclose(dec(collective, out), p(x), atol=1e-5)      # c0 not halved
    assert ev.level(out) == ev.chebyshev_levels(9, -4, 20)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5, 7, 8, 11])
def test_power_basis_levels_and_values(evaluator, collective, degree):
    ev = evaluator
    x = np.linspace(-3, 3, ev.slots)
    p = ChebyshevPoly.fit(lambda v: np.tanh(v) + 0.1 * np.exp(v / 3), -3, 3, degree)
    pp = plan_poly(p)
    assert pp.kind == "power" and len(pp.coeffs) == degree + 1
    a = ev.encrypt(x)
    powers = {1: a}

    def power(m):
        if m not in powers:
            powers[m] = ev.mul(power(m // 2), power(m // 2))
        return powers[m]

    out = eval_power(ev, pp.coeffs, power)
    assert ev.level(out) == power_levels(pp.coeffs) == int(np.log2(degree)) + 1
    np.testing.assert_allclose(dec(collective, out), p(x), atol=1e-4)
