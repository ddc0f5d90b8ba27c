"""The packing plan: block geometry (H, chunk c), rotation offsets and the rotation-key set.

A block holds one H x H matrix per sample of a chunk of ``c`` samples::

    slot(i, j, k) = (i * H + j) * c + k        i, j < H (matrix row, column), k < c (sample)

and is repeated ``slots / (H * H * c)`` times to fill every slot, so that a cyclic rotation of the
whole ciphertext acts as a rotation modulo the block (rotate-and-sum over i is exact everywhere).

Rotations follow OpenFHE: ``rotate(v, r)[s] = v[s + r]`` (positive r moves values towards slot 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from rhode.errors import ParameterError


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class TransposeSchedule:
    """Baby-step giant-step schedule of the H x H transposition (one level, masks by diagonal).

    Diagonal delta = j - i (source coordinates) moves by ``-delta * (H - 1) * c`` slots. With
    e = delta + H - 1 = g * a + bb (bb < g), the rotation splits into a baby step ``baby[bb]``
    (applied to the input, hoisted) and a giant step ``giant[a]`` (applied to a sum of masked babies).

    Attributes:
        g: baby-step count (bb ranges over 0..g-1; baby[0] = 0 needs no rotation).
        baby: baby rotation offsets, ``baby[bb] = -bb * (H - 1) * c``.
        giant: giant rotation offsets, ``giant[a] = -(g * a - (H - 1)) * (H - 1) * c``.
        terms: (a, bb, delta) for every diagonal delta in -(H-1)..H-1.
    """

    g: int
    baby: tuple[int, ...]
    giant: tuple[int, ...]
    terms: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class PackingPlan:
    """Geometry of the multi-dimensional packing.

    Attributes:
        H: padded dimension (power of two >= every feature, hidden and output size, at least 2).
        c: samples per ciphertext (chunk; a power of two). ``c == 1`` is the naive baseline.
        slots: CKKS slots of the context (N / 2).
        naive: True for the one-sample-per-ciphertext baseline.
    """

    H: int
    c: int
    slots: int
    naive: bool = False

    def __post_init__(self) -> None:
        for name, v in (("H", self.H), ("c", self.c), ("slots", self.slots)):
            if v < 1 or v & (v - 1):
                raise ParameterError(f"packing {name} must be a power of two, got {v}")
        if self.H < 2:
            raise ParameterError(f"packing H must be at least 2, got {self.H}")
        if self.block > self.slots:
            raise ParameterError(
                f"a block of H*H*c = {self.H}*{self.H}*{self.c} = {self.block} slots does not fit "
                f"{self.slots} slots; lower the chunk size or use a larger ring")

    # ---- geometry -------------------------------------------------------------------------
    @property
    def block(self) -> int:
        """Slots of one block (H * H * c)."""
        return self.H * self.H * self.c

    @property
    def copies(self) -> int:
        """How many times the block is repeated to fill the slots."""
        return self.slots // self.block

    @property
    def log_h(self) -> int:
        return self.H.bit_length() - 1

    @property
    def log_c(self) -> int:
        return self.c.bit_length() - 1

    def n_chunks(self, batch: int) -> int:
        """Ciphertexts per batch tensor of ``batch`` samples."""
        if batch < 1:
            raise ParameterError(f"batch size must be at least 1, got {batch}")
        return -(-batch // self.c)

    def slot(self, i: int, j: int, k: int) -> int:
        """Slot of matrix entry (i, j) of sample k of a chunk (first copy of the block)."""
        return (i * self.H + j) * self.c + k

    def norm(self, r: int) -> int:
        """Canonical rotation offset: r modulo slots, in (-slots/2, slots/2]."""
        r %= self.slots
        return r - self.slots if r > self.slots // 2 else r

    # ---- rotation offsets ---------------------------------------------------------------------
    @property
    def sum_i(self) -> tuple[int, ...]:
        """Rotate-and-sum over the row index i (exact in every slot): H*c*2^m, m < log2 H."""
        return tuple(self.norm(self.H * self.c << m) for m in range(self.log_h))

    @property
    def sum_j(self) -> tuple[int, ...]:
        """Rotate-and-sum over the column index j (valid at j = 0): c*2^m, m < log2 H."""
        return tuple(self.norm(self.c << m) for m in range(self.log_h))

    @property
    def rep_j(self) -> tuple[int, ...]:
        """Replicate a value at j = 0 over j by rotate-and-add: -c*2^m, m < log2 H."""
        return tuple(self.norm(-(self.c << m)) for m in range(self.log_h))

    @property
    def sum_k(self) -> tuple[int, ...]:
        """Rotate-and-sum over the samples of a chunk (valid at k = 0): 2^m, m < log2 c."""
        return tuple(self.norm(1 << m) for m in range(self.log_c))

    @property
    def rep_k(self) -> tuple[int, ...]:
        """Replicate a value at k = 0 over the chunk: -2^m, m < log2 c."""
        return tuple(self.norm(-(1 << m)) for m in range(self.log_c))

    @cached_property
    def transpose(self) -> TransposeSchedule:
        """The cheapest baby-step giant-step split of the 2H-1 diagonal rotations."""
        H, c = self.H, self.c
        n_diag = 2 * H - 1
        best = None
        for g in range(1, n_diag + 1):
            n_giant = -(-n_diag // g)
            giant = tuple(self.norm(-(g * a - (H - 1)) * (H - 1) * c) for a in range(n_giant))
            cost = (g - 1) + sum(1 for r in giant if r != 0)
            if best is None or cost < best[0]:
                best = (cost, g, giant)
        _, g, giant = best
        baby = tuple(self.norm(-bb * (H - 1) * c) for bb in range(g))
        terms = []
        for e in range(n_diag):
            a, bb = divmod(e, g)
            terms.append((a, bb, e - (H - 1)))
        return TransposeSchedule(g, baby, giant, tuple(terms))

    def rotation_indices(self) -> list[int]:
        """Every rotation offset the cipher backend uses with this plan (generate these keys)."""
        t = self.transpose
        offsets = set(self.sum_i) | set(self.sum_j) | set(self.rep_j) | set(self.sum_k) | set(self.rep_k)
        offsets |= set(t.baby) | set(t.giant)
        offsets.discard(0)
        return sorted(offsets)


def plan(max_dim: int, batch_size: int, slots: int, naive: bool = False) -> PackingPlan:
    """Choose the packing for a model whose largest feature/hidden/output size is ``max_dim``.

    H = the next power of two >= max_dim (at least 2); c = 1 for the naive baseline, else
    min(next_pow2(batch_size), slots / H^2). A batch then spans ceil(batch_size / c) ciphertexts.

    Raises:
        ParameterError: if H * H > slots (the model is too wide for the ring), or a size is < 1.
    """
    if max_dim < 1:
        raise ParameterError(f"model dimensions must be at least 1, got {max_dim}")
    if batch_size < 1:
        raise ParameterError(f"batch size must be at least 1, got {batch_size}")
    if slots < 1 or slots & (slots - 1):
        raise ParameterError(f"slots must be a power of two, got {slots}")
    H = max(2, next_pow2(max_dim))
    if slots < H * H:
        raise ParameterError(
            f"the largest model dimension {max_dim} pads to H = {H}, and an H x H block needs "
            f"{H * H} slots but a ciphertext has only {slots}; use a larger ring (a preset with a "
            f"bigger ring_dim) or a hidden/feature size of at most {math.isqrt(slots)}")
    c = 1 if naive else min(next_pow2(batch_size), slots // (H * H))
    return PackingPlan(H, c, slots, naive)
