"""Tensors of the cipher backend.

* :class:`PlainBatch` - plaintext data (b, n) owned by the caller, encoded on demand in whatever
  layout an operation needs (free: no encryption, no level).
* :class:`CipherBatch` - an encrypted batch tensor (b, n): ceil(b / c) ciphertexts per layout. Its
  value may be held as a lazy sum of parts in different layouts (R and C), or deferred until the
  first consumer says which layout it wants (a product of plaintext data with encrypted weights).
  Conversions are cached.
* :class:`CipherParam` - an encrypted parameter (n, m) or (m,): one ciphertext per form (nat, T,
  and for biases the diag form), or, for a gradient not yet summed over the batch, *pending* parts
  (nat and/or T) that still need the sum over the samples of a chunk.

What a tensor *represents* never changes: every Backend operation returns a new tensor. The objects
themselves are mutable, and the backend changes them in place in three ways, none of which changes
the value:

* caches are filled: a conversion to the other layout (``full``), encoded plaintexts (``encoded``),
  powers for polynomials (``powers``), further parameter forms (``forms``);
* lazy states are resolved: a deferred or mixed batch tensor gets its parts in one layout, a pending
  parameter (a gradient) is summed over the batch (its ``pending`` parts are replaced by a form);
* a refresh (:mod:`rhode.tensor.levels`) overwrites ciphertexts in place, in ``parts``, ``full``,
  ``forms`` and ``pending``, by level-0 encryptions of the same values, and clears ``powers``.

Chunk lists may be shared between tensors (an operation's output can reuse an operand's list), so a
refresh through one of them is seen by all: they hold the same values. Code that keeps a ciphertext
taken out of a tensor (e.g. an exported one) keeps the old ciphertext, not a refreshed one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rhode.packing import Layout


class PlainBatch:
    """Plaintext batch (b, n): ``backend.data(x)``. Never encrypted."""

    __slots__ = ("array", "encoded")

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.asarray(array, dtype=np.float64)
        self.encoded: dict[str, list] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __repr__(self) -> str:
        return f"PlainBatch(shape={self.shape})"


class CipherTensor:
    """Base of encrypted tensors: a shape and a creation order (newer tensors set the layout)."""

    shape: tuple[int, ...]
    seq: int

    def ciphertexts(self) -> list:
        """Every ciphertext the tensor currently holds (for level inspection)."""
        raise NotImplementedError


class CipherBatch(CipherTensor):
    """Encrypted batch tensor (b, n).

    Attributes:
        shape: (b, n).
        parts: layout -> list of chunk ciphertexts; the value is the sum of the parts.
        full: layout -> chunk ciphertexts holding the whole value in that layout (cache).
        pref: the layout this tensor was produced in (None while deferred).
        maker: for a deferred tensor, layout -> chunk ciphertexts.
    """

    def __init__(self, shape: tuple[int, int], seq: int, parts: dict[str, list] | None = None,
                 maker: Callable[[str], list] | None = None, pref: str | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.seq = seq
        self.parts: dict[str, list] = dict(parts or {})
        self.full: dict[str, list] = {}
        if len(self.parts) == 1:
            (lay, cts), = self.parts.items()
            self.full[lay] = cts
        self.maker = maker
        self.pref = pref if pref is not None else (next(iter(self.parts)) if self.parts else None)
        self.powers: dict[str, list[dict]] = {}

    @property
    def deferred(self) -> bool:
        return not self.parts and self.maker is not None

    @property
    def layout(self) -> str | None:
        """The single layout the value is held in (None if deferred or a mixed sum)."""
        return next(iter(self.parts)) if len(self.parts) == 1 else None

    def ciphertexts(self) -> list:
        out, seen = [], set()
        for cts in list(self.parts.values()) + list(self.full.values()):
            for ct in cts:
                if id(ct) not in seen:
                    seen.add(id(ct))
                    out.append(ct)
        return out

    def forget_powers(self) -> None:
        self.powers.clear()

    def __repr__(self) -> str:
        state = "deferred" if self.deferred else "+".join(self.parts)
        return f"CipherBatch(shape={self.shape}, layout={state})"


class CipherParam(CipherTensor):
    """Encrypted parameter (n, m) or (m,), replicated over the samples of a chunk.

    Attributes:
        forms: form ("nat", "T", "diag") -> ciphertext (materialized value).
        pending: form ("nat", "T") -> ciphertext not yet summed over the samples (a gradient).
    """

    def __init__(self, shape: tuple[int, ...], seq: int, forms: dict | None = None,
                 pending: dict | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.seq = seq
        self.forms: dict[str, object] = dict(forms or {})
        self.pending: dict[str, object] = dict(pending or {})

    @property
    def is_pending(self) -> bool:
        return bool(self.pending)

    def ciphertexts(self) -> list:
        return list(self.forms.values()) + list(self.pending.values())

    def __repr__(self) -> str:
        state = "pending " + "+".join(self.pending) if self.pending else "+".join(self.forms)
        return f"CipherParam(shape={self.shape}, {state})"


def target_layout(*ts) -> Layout:
    """Layout for an elementwise operation / product input among these batch tensors (plaintext ones
    are ignored): one all the encrypted ones already hold (the newest operand's if it is among them),
    else the newest operand's layout, else R."""
    enc = [t for t in ts if isinstance(t, CipherBatch)]
    if not enc:
        return Layout.R
    concrete = sorted((t for t in enc if t.pref is not None), key=lambda t: -t.seq)
    common = set.intersection(*(set(t.full) for t in enc))
    if common:
        for t in concrete:
            if t.pref in common:
                return Layout(t.pref)
        return Layout(sorted(common)[0])
    return Layout(concrete[0].pref) if concrete else Layout.R
