"""Approximate clip-by-value of gradient entries, with the learning rate folded in.

Target: eta * clip_c(g), clip_c(g) = max(-c, min(c, g)), for |g| <= B (c = clip_value, B = clip_bound).
Variants (``TrainConfig.clip``):

* ``"none"``  eta * g: one scalar product.
* ``"poly"``  odd Chebyshev interpolant of eta * clip_c on [-B, B]: one polynomial.
* ``"tanh"``  eta * c * tanh(g / c), odd Chebyshev interpolant on [-B, B]: one polynomial, a soft clip.
* ``"abs"``   eta * (|g + c| - |g - c|) / 2 with |u| ~ q(u^2), q a Chebyshev interpolant of sqrt on
  [0, (B + c)^2]: (g +- c)^2 = g^2 +- 2c g + c^2 (one square and one scalar product in parallel),
  then two polynomials in parallel, then a subtraction.

Every variant maps g = 0 to exactly 0 on the numpy backend (odd fits; the two halves of "abs" are the
same computation on the same value at g = 0). Outside [-B, B] the polynomials diverge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rhode.nn.activations import odd_fit
from rhode.nn.config import TrainConfig
from rhode.tensor.base import Backend, Tensor
from rhode.tensor.numpy_backend import NumpyBackend
from rhode.tensor.poly import ChebyshevPoly


@dataclass(frozen=True)
class Clipper:
    """eta * clip(g) for one TrainConfig; ``poly`` is the polynomial the backend evaluates (None for
    clip="none")."""

    kind: str
    learning_rate: float
    clip_value: float
    poly: ChebyshevPoly | None

    def apply(self, backend: Backend, g: Tensor) -> Tensor:
        """eta * clip(g) elementwise, g a gradient (parameter-shaped). Levels on ciphertexts:
        none: 1 (scalar); poly/tanh: one Chebyshev series; abs: 1 (square) + one series."""
        if self.kind == "none":
            return backend.scale(g, self.learning_rate)
        if self.kind in ("poly", "tanh"):
            return backend.poly(g, self.poly)
        c = self.clip_value
        g2 = backend.mul(g, g)
        gc = backend.scale(g, 2.0 * c)
        plus = backend.add_const(backend.add(g2, gc), c * c)     # (g + c)^2
        minus = backend.add_const(backend.sub(g2, gc), c * c)    # (g - c)^2
        return backend.sub(backend.poly(plus, self.poly), backend.poly(minus, self.poly))

    def __call__(self, g: np.ndarray) -> np.ndarray:
        """The same on a numpy array (for plots, tables and tests)."""
        return self.apply(NumpyBackend(), np.asarray(g, dtype=float))


def clip_target(g: np.ndarray, clip_value: float) -> np.ndarray:
    """The exact clip_c(g) (without learning rate)."""
    return np.clip(g, -clip_value, clip_value)


@lru_cache(maxsize=64)
def _clipper(kind: str, lr: float, c: float, bound: float, degree: int) -> Clipper:
    if kind == "none":
        return Clipper(kind, lr, c, None)
    if kind == "poly":
        p = odd_fit(lambda g: lr * np.clip(g, -c, c), bound, degree)
    elif kind == "tanh":
        p = odd_fit(lambda g: lr * c * np.tanh(g / c), bound, degree)
    else:
        p = ChebyshevPoly.fit(lambda s: 0.5 * lr * np.sqrt(np.maximum(s, 0.0)), 0.0, (bound + c) ** 2,
                              degree)
    return Clipper(kind, lr, c, p)


def make_clipper(train: TrainConfig) -> Clipper:
    """The clipping approximation of a (validated) TrainConfig, learning rate folded in."""
    train.validate()
    return _clipper(train.clip, float(train.learning_rate), float(train.clip_value),
                    float(train.clip_bound), int(train.clip_degree))
