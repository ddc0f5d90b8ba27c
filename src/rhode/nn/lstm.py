"""LSTM cell (H_0 = C_0 = 0):

    I, F, O = sigma(A_i), sigma(A_f), sigma(A_o)      G~ = tanh(A_g)      A_* = X W_* + H U_* + b_*
    C_t = F * C_{t-1} + I * G~                         H_t = O * tanh(C_t)

At t = 1 (C_0 = 0) the forget gate is not computed at all. The forward pass (training) stores the
local Jacobians J_o = tanh(C) * sigma'(A_o), J_c = O * tanh'(C), J_i = G~ * sigma'(A_i),
J_g = I * tanh'(A_g), J_f = C_{t-1} * sigma'(A_f), so that backward multiplies once per gate:

    dA_o = dH * J_o      dC = dC_next + dH * J_c      dA_i = dC * J_i      dA_g = dC * J_g
    dA_f = dC * J_f      dC_prev = dC * F             dH_prev = sum_* dA_* U_*^T

tanh(C) uses the same tanh approximation as the candidate G~: its interval must cover |C_t|.
"""

from __future__ import annotations

from collections.abc import Sequence

from rhode.nn._util import accumulate, affine_terms
from rhode.nn.activations import Activation
from rhode.tensor.base import Backend, Tensor

GATES = ("i", "f", "g", "o")


def param_shapes(d: int, h: int) -> dict[str, tuple[int, ...]]:
    """W_* (d, h), U_* (h, h), b_* (h,) for the input, forget, candidate and output gates."""
    shapes: dict[str, tuple[int, ...]] = {}
    for gate in GATES:
        shapes.update({f"W_{gate}": (d, h), f"U_{gate}": (h, h), f"b_{gate}": (h,)})
    return shapes


def forward(backend: Backend, params: dict[str, Tensor], xs: Sequence[Tensor], tanh: Activation,
            sigmoid: Activation, *, train: bool) -> tuple[Tensor, list[dict]]:
    """Run the cell over xs (T tensors (b, d)); return H_T (b, h) and per-step caches (if train)."""
    p = params
    h = c = None
    steps = []
    for x in xs:
        gates = GATES if c is not None else ("i", "g", "o")
        a = {k: backend.affine(affine_terms(x, p[f"W_{k}"], h, p[f"U_{k}"]), p[f"b_{k}"]) for k in gates}
        i, o = backend.poly(a["i"], sigmoid.f), backend.poly(a["o"], sigmoid.f)
        gt = backend.poly(a["g"], tanh.f)
        ig = backend.mul(i, gt)
        if c is None:
            f, c_new = None, ig
        else:
            f = backend.poly(a["f"], sigmoid.f)
            c_new = backend.add(backend.mul(f, c), ig)
        tc = backend.poly(c_new, tanh.f)
        if train:
            st = {
                "x": x, "h_prev": h, "f": f,
                "j_o": backend.mul(tc, backend.poly(a["o"], sigmoid.df)),
                "j_c": backend.mul(o, backend.poly(c_new, tanh.df)),
                "j_i": backend.mul(gt, backend.poly(a["i"], sigmoid.df)),
                "j_g": backend.mul(i, backend.poly(a["g"], tanh.df)),
            }
            if c is not None:
                st["j_f"] = backend.mul(c, backend.poly(a["f"], sigmoid.df))
            steps.append(st)
        h, c = backend.mul(o, tc), c_new
    return h, steps


def backward(backend: Backend, params: dict[str, Tensor], steps: list[dict],
             g: Tensor) -> dict[str, Tensor]:
    """BPTT from g = dL/dH_T (b, h); return the gradients that are not identically zero."""
    p = params
    grads: dict[str, Tensor | None] = {}
    sums: dict[str, Tensor | None] = {}
    dc_next = None
    for st in reversed(steps):
        d = {"o": backend.mul(g, st["j_o"])}
        dc = accumulate(backend, dc_next, backend.mul(g, st["j_c"]))
        d["i"] = backend.mul(dc, st["j_i"])
        d["g"] = backend.mul(dc, st["j_g"])
        if st["f"] is not None:
            d["f"] = backend.mul(dc, st["j_f"])
            dc_next = backend.mul(dc, st["f"])
        x, hp = st["x"], st["h_prev"]
        for k, dk in d.items():
            grads[f"W_{k}"] = accumulate(backend, grads.get(f"W_{k}"), backend.outer(x, dk))
            sums[f"b_{k}"] = accumulate(backend, sums.get(f"b_{k}"), dk)
            if hp is not None:
                grads[f"U_{k}"] = accumulate(backend, grads.get(f"U_{k}"), backend.outer(hp, dk))
        if hp is not None:
            g = backend.affine_t([(d[k], p[f"U_{k}"]) for k in GATES if k in d])
    grads.update({k: backend.batch_sum(v) for k, v in sums.items()})
    return grads
