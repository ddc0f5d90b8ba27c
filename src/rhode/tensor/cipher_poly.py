"""Low-depth evaluation of a Chebyshev series on ciphertexts.

OpenFHE's generic Chebyshev series maps the interval to [-1, 1] (one level) and then spends
ceil(log2(degree)) + 1 more (degree 5: 4 levels). For the small degrees activations and clipping use,
rhode instead converts the series to the power basis in x and evaluates it by a depth-optimal split

    p(x) = low(x) + x^m * high(x),   m = the largest power of two <= degree,

with the leaves a1 * x + a0 (one scalar product) and the powers x^(2^i) by repeated squaring. Depth:
floor(log2 degree) + 1 levels (degree 3: 2, degree 4-7: 3, degree 8-15: 4), one or two levels fewer
than the generic series. The powers are shared when several polynomials take the same input (an
activation and its derivative). The power basis amplifies rounding by sum_k |a_k| R^k (R the largest
|x| of the interval); when that exceeds ``MAX_CONDITION`` the OpenFHE series is used instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rhode.tensor.poly import ChebyshevPoly

MAX_CONDITION = 1e6
MAX_POWER_DEGREE = 31


@dataclass(frozen=True)
class PolyPlan:
    """How a polynomial is evaluated: ``kind`` "power" (coeffs = power-basis coefficients in x) or
    "chebyshev" (OpenFHE series on [a, b] with the numpy-convention coefficients)."""

    kind: str
    coeffs: tuple[float, ...]
    a: float
    b: float


def plan_poly(p: ChebyshevPoly) -> PolyPlan:
    """Pick the evaluation of ``p``: power basis if well conditioned and of small degree."""
    cheb = np.polynomial.Chebyshev(np.asarray(p.coeffs, dtype=float), domain=[p.a, p.b])
    power = cheb.convert(kind=np.polynomial.Polynomial).coef
    R = max(abs(p.a), abs(p.b), 1.0)
    size = np.abs(power) * R ** np.arange(len(power))
    cond = float(size.sum())
    if len(power) - 1 <= MAX_POWER_DEGREE and cond <= MAX_CONDITION:
        power = np.where(size < 1e-15 * max(cond, 1e-300), 0.0, power)
        return PolyPlan("power", tuple(float(c) for c in _trim(power)), p.a, p.b)
    return PolyPlan("chebyshev", tuple(float(c) for c in p.coeffs), p.a, p.b)


def _trim(c) -> list[float]:
    c = list(c)
    while len(c) > 1 and c[-1] == 0.0:
        c.pop()
    return c or [0.0]


def power_levels(coeffs: tuple[float, ...] | list[float]) -> int:
    """Levels the power-basis evaluation of ``coeffs`` consumes (0 for a constant)."""
    lv = _levels(_trim(coeffs))
    return 0 if lv is None else lv


def _levels(c: list[float]) -> int | None:
    d = len(c) - 1
    if d <= 0:
        return None
    if d == 1:
        return 0 if abs(c[1]) == 1.0 else 1
    m = 1 << (d.bit_length() - 1)
    low, high = _trim(c[:m]), _trim(c[m:])
    pw = m.bit_length() - 1
    hl = _levels(high)
    term = pw + (0 if abs(high[0]) == 1.0 else 1) if hl is None else max(pw, hl) + 1
    ll = _levels(low)
    return term if ll is None else max(term, ll)


def eval_power(ev, coeffs: tuple[float, ...] | list[float], power: Callable[[int], object]):
    """Evaluate sum_k coeffs[k] x^k; ``power(m)`` returns the ciphertext x^m (m a power of two).
    Returns a ciphertext, or a float if the polynomial is constant."""
    c = _trim(coeffs)
    d = len(c) - 1
    if d <= 0:
        return float(c[0])
    if d == 1:
        t = ev.mul_const(power(1), c[1])
        return ev.add_const(t, c[0]) if c[0] != 0.0 else t
    m = 1 << (d.bit_length() - 1)
    low = eval_power(ev, c[:m], power)
    high = eval_power(ev, c[m:], power)
    xm = power(m)
    term = ev.mul_const(xm, high) if isinstance(high, float) else ev.mul(high, xm)
    if isinstance(low, float):
        return term if low == 0.0 else ev.add_const(term, low)
    return ev.add(term, low)
