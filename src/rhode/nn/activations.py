"""Activations as objects a backend's ``poly`` evaluates: Chebyshev approximations (the mirror of the
encrypted run) or exact numpy functions (the non-secure baseline, numpy backend only).

Every activation has ``__call__`` (numpy) and ``derivative()``; the backward pass evaluates the
derivative of exactly the function the forward pass used (p' for a polynomial p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhode.nn.config import ModelConfig
from rhode.tensor.poly import ChebyshevPoly


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(x, dtype=float))


class ExactTanh:
    """tanh on numpy arrays (``backend.poly`` of the numpy backend calls it)."""

    degree = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(x, dtype=float))

    def derivative(self) -> ExactTanhDerivative:
        return ExactTanhDerivative()


class ExactTanhDerivative:
    """1 - tanh(x)^2."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - np.tanh(np.asarray(x, dtype=float)) ** 2


class ExactSigmoid:
    """The logistic sigmoid on numpy arrays."""

    degree = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x)

    def derivative(self) -> ExactSigmoidDerivative:
        return ExactSigmoidDerivative()


class ExactSigmoidDerivative:
    """sigma(x) (1 - sigma(x))."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = _sigmoid(x)
        return s * (1.0 - s)


def odd_fit(f, bound: float, degree: int, *, offset: float = 0.0) -> ChebyshevPoly:
    """Chebyshev interpolation of ``offset + f`` on [-bound, bound], ``f`` odd, with the even
    coefficients set to exactly zero (except c0 = offset), so that p(0) = offset exactly and p - offset
    is odd. ``degree`` should be odd."""
    p = ChebyshevPoly.fit(f, -bound, bound, degree)
    coeffs = [c if k % 2 else 0.0 for k, c in enumerate(p.coeffs)]
    coeffs[0] = float(offset)
    return ChebyshevPoly(p.a, p.b, tuple(coeffs))


def tanh_poly(interval: float, degree: int) -> ChebyshevPoly:
    """tanh ~ odd Chebyshev interpolant of the given degree on [-interval, interval]."""
    return odd_fit(np.tanh, interval, degree)


def sigmoid_poly(interval: float, degree: int) -> ChebyshevPoly:
    """sigma ~ 1/2 + odd Chebyshev interpolant of sigma - 1/2 on [-interval, interval]."""
    return odd_fit(lambda x: _sigmoid(x) - 0.5, interval, degree, offset=0.5)


@dataclass(frozen=True)
class Activation:
    """A function and its derivative, both evaluated with ``backend.poly``."""

    f: object
    df: object


def make_activations(config: ModelConfig) -> tuple[Activation, Activation]:
    """(tanh, sigmoid) for ``config``: Chebyshev polynomials if activation == "poly", else exact."""
    if config.activation == "exact":
        t, s = ExactTanh(), ExactSigmoid()
    else:
        t = tanh_poly(config.tanh_interval, config.tanh_degree)
        s = sigmoid_poly(config.sigmoid_interval, config.sigmoid_degree)
    return Activation(t, t.derivative()), Activation(s, s.derivative())
