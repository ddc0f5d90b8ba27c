"""Layout policy: the names of the layouts and forms, and the rules that say which one a tensor is held
in. Pure (no crypto, no tensors); the cipher backend and the federated layer (a querier encrypting its
inputs) both follow these rules, so they are written once, here. See docs/packing.md.

Batch tensors are held in layout R or C, parameters in form nat or T (and a bias also in diag, its
entries on the diagonal i == j). A product contracts its input's layout and gives the other one:
input in C -> output in R (1 level), input in R -> output in C (2 levels). Successive products
therefore alternate, and a recurrence's hidden state H_t alternates with the timestep; an input X_t
encrypted in the layout H_{t-1} has at step t meets the weights with no conversion
(:func:`input_layout`).

Both enums are ``str``-valued: ``Layout.R == "R"`` and ``Form.NAT == "nat"``, they hash like those
strings (dict keys mix freely) and serialize as them (JSON, payload metadata).
"""

from __future__ import annotations

from enum import Enum


class Layout(str, Enum):
    """Layout of a batch tensor V (b, n) in a chunk ciphertext (sample k of the chunk = row k).

    R (row): slot(i, j, k) = V[k, j] (values along j, replicated over i).
    C (column): slot(i, j, k) = V[k, i] (values along i, replicated over j).
    """

    R = "R"
    C = "C"

    def __str__(self) -> str:
        return self.value

    @property
    def other(self) -> Layout:
        """The other layout (a product's output layout for an input in this one)."""
        return Layout.C if self is Layout.R else Layout.R


class Form(str, Enum):
    """Form of a parameter ciphertext (replicated over the samples k of a chunk).

    NAT: W (n, m) at slot(i, j) = W[i, j]; a bias b (m,) at slot(i, j) = b[j].
    T: the transpose, slot(i, j) = W[j, i]; a bias at slot(i, j) = b[i].
    DIAG: a bias only, b[i] at i == j and zero elsewhere (added before the sum over j of a product
    whose input is in R).
    """

    NAT = "nat"
    T = "T"
    DIAG = "diag"

    def __str__(self) -> str:
        return self.value


#: the form every party exports, aggregates and serializes a parameter in
CANONICAL_FORM = Form.NAT


def layout_of(value: str) -> Layout:
    """``value`` ("R"/"C" or a :class:`Layout`) as a :class:`Layout`; ValueError for anything else."""
    try:
        return Layout(value)
    except ValueError:
        raise ValueError(f"unknown layout {value!r}") from None


def input_layout(t: int) -> Layout:
    """The layout a recurrence's input X_t is encrypted in, ``t`` the 0-based timestep of the window.

    C at even ``t`` (odd 1-based timesteps: 1, 3, ...), R at odd ``t``. The first product, X_1 W
    (+ H_0 U with H_0 = 0), takes its input in C and gives H_1 in R; the next takes H_1 and X_2 in R
    and gives H_2 in C; and so on: X_t always arrives in the layout H_{t-1} is produced in, so it needs
    no conversion. ``CipherBackend.encrypt_inputs`` and a querier encrypting its own windows both
    follow this rule (the aggregator accepts either layout, a wrong one costs a conversion).
    """
    if t < 0:
        raise ValueError(f"timestep index must be >= 0, got {t}")
    return Layout.C if t % 2 == 0 else Layout.R


def input_layouts(timesteps: int) -> list[Layout]:
    """:func:`input_layout` of every timestep 0..timesteps-1 of a window."""
    return [input_layout(t) for t in range(timesteps)]


def product_layout(layout_in: str) -> Layout:
    """Output layout of a product (affine, affine_t) whose inputs are in ``layout_in``."""
    return layout_of(layout_in).other


def contract_levels(layout_in: str) -> int:
    """Levels a product or a layout conversion spends on an operand in ``layout_in``: 1 from C (sum
    over i), 2 from R (sum over j, mask, replicate)."""
    return 1 if layout_of(layout_in) is Layout.C else 2


def weight_form(layout_in: str, transposed: bool) -> Form:
    """The weight form a product with its input in ``layout_in`` multiplies by: affine (x @ W) takes
    W in nat for an input in C and in T for R; affine_t (d @ W.T) the other way round."""
    return Form.NAT if (layout_of(layout_in) is Layout.C) != transposed else Form.T


def bias_form(layout_in: str) -> Form:
    """The bias form an affine with its input in ``layout_in`` adds: nat after the sum over i (input
    in C), diag before the sum over j (input in R; computing diag from nat costs 1 level)."""
    return Form.NAT if layout_of(layout_in) is Layout.C else Form.DIAG


def aligned_form(layout: str) -> Form:
    """The parameter form whose entries line up with a batch tensor in ``layout``: nat for R (both
    vary along j), T for C (along i). A bias is added to a batch tensor in this form, a batch sum of
    a tensor in ``layout`` and an outer product x.T @ d with d in ``layout`` come out in it."""
    return Form.NAT if layout_of(layout) is Layout.R else Form.T
