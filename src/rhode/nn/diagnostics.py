"""Plaintext diagnostics: the ranges the polynomial approximations must cover."""

from __future__ import annotations

import numpy as np

from rhode.tensor.numpy_backend import NumpyBackend
from rhode.tensor.poly import ChebyshevPoly


class RangeRecorder(NumpyBackend):
    """The numpy backend, recording the largest |input| of every ``poly`` call per labelled function.

    labels: maps functions (by identity, e.g. ``model.tanh.f``) to a label such as "tanh".
    """

    def __init__(self, labels: dict[object, str]) -> None:
        self._labels = {id(f): name for f, name in labels.items()}
        self.max_abs: dict[str, float] = dict.fromkeys(labels.values(), 0.0)

    def poly(self, a: np.ndarray, p: ChebyshevPoly) -> np.ndarray:
        label = self._labels.get(id(p))
        if label is not None:
            self.max_abs[label] = max(self.max_abs[label], float(np.max(np.abs(a))))
        return super().poly(a, p)
