"""Elman RNN cell: A_t = X_t W + H_{t-1} U + b, H_t = tanh(A_t), H_0 = 0.

Per timestep (training): one affine, two polynomials in parallel (tanh and tanh'); backward: one
product D_t = G_t * tanh'(A_t), one transposed affine, two outer products.
"""

from __future__ import annotations

from collections.abc import Sequence

from rhode.nn._util import accumulate, affine_terms
from rhode.nn.activations import Activation
from rhode.tensor.base import Backend, Tensor


def param_shapes(d: int, h: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes: W (d, h), U (h, h), b (h,)."""
    return {"W": (d, h), "U": (h, h), "b": (h,)}


def forward(backend: Backend, params: dict[str, Tensor], xs: Sequence[Tensor], tanh: Activation,
            sigmoid: Activation, *, train: bool) -> tuple[Tensor, list[dict]]:
    """Run the cell over xs (T tensors (b, d)); return H_T (b, h) and per-step caches (if train)."""
    h, steps = None, []
    for x in xs:
        a = backend.affine(affine_terms(x, params["W"], h, params["U"]), params["b"])
        if train:
            steps.append({"x": x, "h_prev": h, "dphi": backend.poly(a, tanh.df)})
        h = backend.poly(a, tanh.f)
    return h, steps


def backward(backend: Backend, params: dict[str, Tensor], steps: list[dict],
             g: Tensor) -> dict[str, Tensor]:
    """BPTT from g = dL/dH_T (b, h); return the gradients that are not identically zero."""
    grads: dict[str, Tensor | None] = {"W": None, "U": None}
    dsum = None
    for st in reversed(steps):
        d = backend.mul(g, st["dphi"])
        grads["W"] = accumulate(backend, grads["W"], backend.outer(st["x"], d))
        dsum = accumulate(backend, dsum, d)
        if st["h_prev"] is not None:
            grads["U"] = accumulate(backend, grads["U"], backend.outer(st["h_prev"], d))
            g = backend.affine_t([(d, params["U"])])
    grads["b"] = backend.batch_sum(dsum)
    return {k: v for k, v in grads.items() if v is not None}
