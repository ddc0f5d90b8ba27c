"""The plaintext backend: float64 numpy arrays. With exact activations it is the non-secure
baseline; with the polynomial approximations it is the exact mirror of the encrypted run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhode.tensor.poly import ChebyshevPoly


class NumpyBackend:
    """:class:`rhode.tensor.base.Backend` on numpy arrays (no levels, no encryption)."""

    name = "numpy"

    def data(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def param(self, w: np.ndarray) -> np.ndarray:
        return np.array(w, dtype=np.float64)

    def affine(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
               bias: np.ndarray | None = None) -> np.ndarray:
        out = sum(x @ w for x, w in pairs)
        return out if bias is None else out + bias

    def affine_t(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return sum(d @ w.T for d, w in pairs)

    def outer(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        return x.T @ d

    def batch_sum(self, d: np.ndarray) -> np.ndarray:
        return d.sum(axis=0)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def neg(self, a: np.ndarray) -> np.ndarray:
        return -a

    def scale(self, a: np.ndarray, c: float) -> np.ndarray:
        return c * a

    def add_const(self, a: np.ndarray, c: float) -> np.ndarray:
        return a + c

    def poly(self, a: np.ndarray, p: ChebyshevPoly) -> np.ndarray:
        return p(a)
