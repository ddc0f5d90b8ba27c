"""Small helpers shared by the cells."""

from __future__ import annotations

from rhode.tensor.base import Backend, Tensor


def accumulate(backend: Backend, total: Tensor | None, term: Tensor) -> Tensor:
    """total + term, where a missing total (None) stands for zero (no operation spent on it)."""
    return term if total is None else backend.add(total, term)


def affine_terms(x: Tensor, w: Tensor, h: Tensor | None, u: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The product terms of X W + H U, without H U when H is the zero initial state (None)."""
    return [(x, w)] if h is None else [(x, w), (h, u)]
