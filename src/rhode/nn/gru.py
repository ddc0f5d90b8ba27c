"""GRU cell, torch.nn.GRU convention (H_0 = 0):

    Z = sigma(X W_z + H U_z + b_z)        R = sigma(X W_r + H U_r + b_r)
    S = H U_n + c_n                       N = tanh(X W_n + b_n + R * S)
    H' = (1 - Z) * N + Z * H = N + Z * (H - N)

The forward pass (training) also stores the local Jacobians P_z = (H - N) * sigma'(A_z) and
Q_r = S * sigma'(A_r), so that the backward pass multiplies the incoming gradient once per gate:

    dA_z = G * P_z      dA_n = (G - G*Z) * tanh'(A_n)      dS = dA_n * R      dA_r = dA_n * Q_r
    G_prev = G*Z + dA_z U_z^T + dA_r U_r^T + dS U_n^T
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhode.nn._util import accumulate, affine_terms
from rhode.nn.activations import Activation
from rhode.tensor.base import Backend, Tensor


def param_shapes(d: int, h: int) -> dict[str, tuple[int, ...]]:
    """W_* (d, h), U_* (h, h), b_* (h,) for gates z, r, n, and c_n (h,), the hidden bias inside R * S."""
    shapes: dict[str, tuple[int, ...]] = {}
    for gate in ("z", "r", "n"):
        shapes.update({f"W_{gate}": (d, h), f"U_{gate}": (h, h), f"b_{gate}": (h,)})
    shapes["c_n"] = (h,)
    return shapes


def forward(backend: Backend, params: dict[str, Tensor], xs: Sequence[Tensor], tanh: Activation,
            sigmoid: Activation, *, train: bool) -> tuple[Tensor, list[dict]]:
    """Run the cell over xs (T tensors (b, d)); return H_T (b, h) and per-step caches (if train)."""
    p = params
    h, steps = None, []
    for x in xs:
        a_z = backend.affine(affine_terms(x, p["W_z"], h, p["U_z"]), p["b_z"])
        a_r = backend.affine(affine_terms(x, p["W_r"], h, p["U_r"]), p["b_r"])
        z, r = backend.poly(a_z, sigmoid.f), backend.poly(a_r, sigmoid.f)
        if h is None:  # S = c_n broadcast over the batch (plaintext zeros + bias: no operation)
            rows = np.shape(x)[0]
            s = backend.add(backend.data(np.zeros((rows, np.shape(p["c_n"])[0]))), p["c_n"])
        else:
            s = backend.affine([(h, p["U_n"])], p["c_n"])
        a_n = backend.add(backend.affine([(x, p["W_n"])], p["b_n"]), backend.mul(r, s))
        n = backend.poly(a_n, tanh.f)
        if h is None:
            diff = backend.neg(n)                          # H - N with H = 0
            h_new = backend.sub(n, backend.mul(z, n))
        else:
            diff = backend.sub(h, n)
            h_new = backend.add(n, backend.mul(z, diff))
        if train:
            steps.append({
                "x": x, "h_prev": h, "z": z, "r": r,
                "p_z": backend.mul(diff, backend.poly(a_z, sigmoid.df)),
                "q_r": backend.mul(s, backend.poly(a_r, sigmoid.df)),
                "dtanh": backend.poly(a_n, tanh.df),
            })
        h = h_new
    return h, steps


def backward(backend: Backend, params: dict[str, Tensor], steps: list[dict],
             g: Tensor) -> dict[str, Tensor]:
    """BPTT from g = dL/dH_T (b, h); return the gradients that are not identically zero."""
    p = params
    grads: dict[str, Tensor | None] = dict.fromkeys(
        ("W_z", "U_z", "W_r", "U_r", "W_n", "U_n"))
    sums: dict[str, Tensor | None] = dict.fromkeys(("b_z", "b_r", "b_n", "c_n"))
    for st in reversed(steps):
        gz = backend.mul(g, st["z"])
        d_z = backend.mul(g, st["p_z"])
        d_n = backend.mul(backend.sub(g, gz), st["dtanh"])
        d_s = backend.mul(d_n, st["r"])
        d_r = backend.mul(d_n, st["q_r"])
        x, hp = st["x"], st["h_prev"]
        for name, d in (("z", d_z), ("r", d_r), ("n", d_n)):
            grads[f"W_{name}"] = accumulate(backend, grads[f"W_{name}"], backend.outer(x, d))
            sums[f"b_{name}"] = accumulate(backend, sums[f"b_{name}"], d)
        sums["c_n"] = accumulate(backend, sums["c_n"], d_s)
        if hp is not None:
            for name, d in (("z", d_z), ("r", d_r), ("n", d_s)):
                grads[f"U_{name}"] = accumulate(backend, grads[f"U_{name}"], backend.outer(hp, d))
            g = backend.add(gz, backend.affine_t([(d_z, p["U_z"]), (d_r, p["U_r"]), (d_s, p["U_n"])]))
    out = {k: v for k, v in grads.items() if v is not None}
    out.update({k: backend.batch_sum(v) for k, v in sums.items()})
    return out
