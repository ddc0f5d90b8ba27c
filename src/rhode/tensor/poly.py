"""Polynomials the tensor backends evaluate: Chebyshev series on an interval.

``ChebyshevPoly(a, b, coeffs)`` is f(x) = sum_k coeffs[k] * T_k(u) with u = (2x - a - b) / (b - a), the
numpy.polynomial.chebyshev convention (no halved c0). The numpy backend evaluates it with
``chebval``. The cipher backend converts it to the power basis in x and evaluates that depth-optimally
(floor(log2 degree) + 1 levels, :mod:`rhode.tensor.cipher_poly`; docs/architecture.md, "Departure:
polynomials in the power basis"); only a series that is badly conditioned in the power basis, or of
degree above 31, goes to OpenFHE's Chebyshev series evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev as C


@dataclass(frozen=True)
class ChebyshevPoly:
    """A Chebyshev series on [a, b] (numpy convention).

    Attributes:
        a, b: the interval; outside it the polynomial is not an approximation of anything.
        coeffs: Chebyshev coefficients, ``coeffs[k]`` multiplies T_k.
    """

    a: float
    b: float
    coeffs: tuple[float, ...]

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    @classmethod
    def fit(cls, f: Callable[[np.ndarray], np.ndarray], a: float, b: float,
            degree: int) -> ChebyshevPoly:
        """Chebyshev interpolation of ``f`` at the degree+1 Chebyshev nodes of [a, b]."""
        coeffs = C.chebinterpolate(lambda u: f((u * (b - a) + a + b) / 2.0), degree)
        return cls(float(a), float(b), tuple(float(c) for c in coeffs))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = (2.0 * np.asarray(x, dtype=float) - self.a - self.b) / (self.b - self.a)
        return C.chebval(u, np.asarray(self.coeffs))

    def derivative(self) -> ChebyshevPoly:
        """The exact derivative d/dx of this polynomial, as a series on the same interval."""
        d = C.chebder(np.asarray(self.coeffs)) * (2.0 / (self.b - self.a))
        if len(d) == 0:
            d = np.zeros(1)
        return ChebyshevPoly(self.a, self.b, tuple(float(c) for c in d))

    def scaled(self, factor: float) -> ChebyshevPoly:
        """factor * f, with the factor folded into the coefficients (costs no level)."""
        return ChebyshevPoly(self.a, self.b, tuple(factor * c for c in self.coeffs))
