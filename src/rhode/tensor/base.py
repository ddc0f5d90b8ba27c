"""The tensor interface that rhode.nn is written against.

Two kinds of tensors flow through a model:

* **batch tensors**, shape (b, n): one row per sample. Either plaintext data owned by the caller
  (:meth:`Backend.data`: inputs X_t and targets Y) or values computed from the model (encrypted on the
  cipher backend: pre-activations, hidden states, gradients w.r.t. them).
* **parameters**, shape (n, m) for a weight matrix or (m,) for a bias, and everything shaped like
  them (gradients, updates). On the cipher backend they are encrypted and replicated over the batch.

The vocabulary is deliberately small: every operation must also exist on packed ciphertexts.
Elementwise operations take two tensors of the same kind and shape, except that a bias (m,) may be
added to a batch tensor (b, m). Neither backend may be told which one it is: the model code is the
same for both. Levels: on the cipher backend each operation documents the levels it consumes; the
numpy backend consumes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rhode.tensor.poly import ChebyshevPoly

Tensor = Any  # numpy.ndarray on the numpy backend, rhode.tensor.cipher.CipherTensor on the cipher one


class Backend(Protocol):
    """Operations a recurrent model needs. ``x``, ``d``: batch tensors; ``w``: a parameter."""

    name: str

    def data(self, x: np.ndarray) -> Tensor:
        """Plaintext batch (b, n) owned by the caller (inputs, targets). Never encrypted."""

    def param(self, w: np.ndarray) -> Tensor:
        """A model parameter (n, m) or (m,) from plaintext (cipher: encrypted, for the initial model)."""

    def affine(self, pairs: Sequence[tuple[Tensor, Tensor]], bias: Tensor | None = None) -> Tensor:
        """sum_i x_i @ w_i (+ bias): each x_i (b, n_i) @ w_i (n_i, m) -> (b, m).

        Every pre-activation is one call (e.g. X_t W + H_{t-1} U + b): the cipher backend sums the
        slot-wise products first and rotate-and-sums once, and chooses the layout of the plaintext
        operands to match the encrypted ones."""

    def affine_t(self, pairs: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """sum_i d_i @ w_i.T: each d_i (b, m) @ (n, m).T -> (b, n) (backward through the products)."""

    def outer(self, x: Tensor, d: Tensor) -> Tensor:
        """x.T @ d: (b, n), (b, m) -> (n, m), summed over the batch (a weight gradient)."""

    def batch_sum(self, d: Tensor) -> Tensor:
        """Sum over the batch: (b, m) -> (m,) (a bias gradient)."""

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """a + b elementwise (a bias (m,) broadcasts over a batch tensor (b, m))."""

    def sub(self, a: Tensor, b: Tensor) -> Tensor:
        """a - b elementwise."""

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        """a * b elementwise (Hadamard product)."""

    def neg(self, a: Tensor) -> Tensor:
        """-a."""

    def scale(self, a: Tensor, c: float) -> Tensor:
        """c * a for a public constant c (cipher: one level; fold constants into polynomials when
        possible)."""

    def add_const(self, a: Tensor, c: float) -> Tensor:
        """a + c for a public constant c."""

    def poly(self, a: Tensor, p: ChebyshevPoly) -> Tensor:
        """p(a) elementwise, p a Chebyshev series (inputs must lie in p's interval)."""
