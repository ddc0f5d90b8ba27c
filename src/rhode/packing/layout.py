"""Where each value of a tensor sits in the slots: encode/decode between numpy arrays and slot
vectors, and the plaintext masks the cipher backend multiplies by.

Batch tensors V (b, n), per chunk of c samples (sample k of the chunk = row q*c + k of V):

* layout ``"R"`` (row):    slot(i, j, k) = V[k, j]   values along j, replicated over i
* layout ``"C"`` (column): slot(i, j, k) = V[k, i]   values along i, replicated over j

Parameters (replicated over k; one slot vector each):

* weight W (n, m): form ``"nat"`` slot(i, j, k) = W[i, j];  form ``"T"`` slot(i, j, k) = W[j, i]
* bias b (m,): form ``"nat"`` slot(i, j, k) = b[j];  form ``"T"`` slot(i, j, k) = b[i]

Everything outside the (b, n) / (n, m) region is zero. Pure numpy, no crypto.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rhode.errors import DataError
from rhode.packing.plan import PackingPlan
from rhode.packing.policy import Form, Layout

LAYOUTS = (Layout.R, Layout.C)
FORMS = (Form.NAT, Form.T)          # the encodable forms (diag is computed from nat)


@lru_cache(maxsize=32)
def _ijk(H: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays I, J, K over one block, in slot order."""
    s = np.arange(H * H * c)
    return s // (H * c), (s // c) % H, s % c


def block_indices(plan: PackingPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I, J, K): the row, column and sample index of every slot of one block."""
    return _ijk(plan.H, plan.c)


def fill(plan: PackingPlan, block: np.ndarray) -> np.ndarray:
    """Repeat one block to all slots."""
    return np.tile(np.asarray(block, dtype=np.float64), plan.copies)


def _check_batch(plan: PackingPlan, V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise DataError(f"a batch tensor must be 2-D (batch, features), got shape {V.shape}")
    if V.shape[1] > plan.H:
        raise DataError(f"{V.shape[1]} features do not fit the packing dimension H = {plan.H}")
    if not np.all(np.isfinite(V)):
        raise DataError("a batch tensor contains NaN or infinite values")
    return V


def encode_batch(plan: PackingPlan, V: np.ndarray, layout: str) -> list[np.ndarray]:
    """Slot vectors (one per chunk of c samples) of a batch tensor V (b, n) in layout R or C."""
    V = _check_batch(plan, V)
    b, n = V.shape
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    I, J, K = block_indices(plan)
    feat = J if layout == Layout.R else I
    out = []
    for q in range(plan.n_chunks(b)):
        rows = q * plan.c + K
        ok = (rows < b) & (feat < n)
        block = np.zeros(plan.block)
        block[ok] = V[rows[ok], feat[ok]]
        out.append(fill(plan, block))
    return out


def decode_batch(plan: PackingPlan, vectors: list[np.ndarray], layout: str, b: int,
                 n: int) -> np.ndarray:
    """Inverse of :func:`encode_batch`: slot vectors (one per chunk) -> (b, n)."""
    if len(vectors) != plan.n_chunks(b):
        raise DataError(f"a batch of {b} needs {plan.n_chunks(b)} ciphertexts, got {len(vectors)}")
    out = np.zeros((b, n))
    k = np.arange(plan.c)
    f = np.arange(n)
    for q, vec in enumerate(vectors):
        vec = np.asarray(vec, dtype=np.float64)
        stride = plan.c if layout == Layout.R else plan.H * plan.c    # read at i = 0 (R) / j = 0 (C)
        idx = f[None, :] * stride + k[:, None]
        rows = q * plan.c + k
        ok = rows < b
        out[rows[ok]] = vec[idx[ok]]
    return out


def _check_param(plan: PackingPlan, W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim not in (1, 2) or any(s > plan.H for s in W.shape):
        raise DataError(f"a parameter must be (n, m) or (m,) with sizes <= H = {plan.H}, "
                        f"got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise DataError("a parameter contains NaN or infinite values")
    return W


def encode_param(plan: PackingPlan, W: np.ndarray, form: str = Form.NAT) -> np.ndarray:
    """Slot vector of a weight (n, m) or bias (m,) in form nat or T (replicated over k)."""
    W = _check_param(plan, W)
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}")
    I, J, _ = block_indices(plan)
    r, s = (I, J) if form == Form.NAT else (J, I)
    block = np.zeros(plan.block)
    if W.ndim == 2:
        ok = (r < W.shape[0]) & (s < W.shape[1])
        block[ok] = W[r[ok], s[ok]]
    else:
        ok = s < W.shape[0]
        block[ok] = W[s[ok]]
    return fill(plan, block)


def decode_param(plan: PackingPlan, vector: np.ndarray, shape: tuple[int, ...],
                 form: str = Form.NAT) -> np.ndarray:
    """Inverse of :func:`encode_param` (reads sample position k = 0 of the first block)."""
    vec = np.asarray(vector, dtype=np.float64)
    H, c = plan.H, plan.c
    if len(shape) == 2:
        i = np.arange(shape[0])[:, None]
        j = np.arange(shape[1])[None, :]
        idx = (i * H + j) * c if form == Form.NAT else (j * H + i) * c
    else:
        j = np.arange(shape[0])
        idx = j * c if form == Form.NAT else j * H * c
    return vec[idx]


# ---- masks (all 0/1 slot vectors) ------------------------------------------------------------
def mask(plan: PackingPlan, *, diag: bool = False, j0: bool = False, k0: bool = False,
         rows: int | None = None, cols: int | None = None, delta: int | None = None) -> np.ndarray:
    """A 0/1 slot vector: the product of the selected conditions on (i, j, k).

    diag: i == j; j0: j == 0; k0: k == 0; rows: i < rows; cols: j < cols; delta: j - i == delta.
    """
    I, J, K = block_indices(plan)
    m = np.ones(plan.block, dtype=bool)
    if diag:
        m &= I == J
    if j0:
        m &= J == 0
    if k0:
        m &= K == 0
    if rows is not None:
        m &= rows > I
    if cols is not None:
        m &= cols > J
    if delta is not None:
        m &= delta == (J - I)
    return fill(plan, m.astype(np.float64))


def valid_region(shape: tuple[int, ...], form: str) -> dict[str, int]:
    """Mask keywords selecting the entries a parameter of ``shape`` occupies in ``form``."""
    if len(shape) == 2:
        n, m = shape
        return {"rows": n, "cols": m} if form == Form.NAT else {"rows": m, "cols": n}
    (m,) = shape
    return {"cols": m} if form == Form.NAT else {"rows": m}


def rotate(v: np.ndarray, r: int) -> np.ndarray:
    """Slot-vector rotation with OpenFHE's convention: out[s] = v[s + r]."""
    return np.roll(v, -r)
