"""Level management of the cipher backend: refresh operands before an operation would run out of
levels, batched into one collective round.

Every ciphertext knows its level (levels spent since its encryption or last refresh; 0 = fresh). An
operation first lists what it will spend, as :class:`LevelNeed` records (an operand's
:class:`Slot` and the levels the operation costs on it), and hands them to
:meth:`LevelManager.ensure`: every ciphertext whose level + cost would exceed ``usable_levels`` is
refreshed, all of them in ONE call of the refresh hook (one collective round). When a round is due
anyway, ``eager_margin`` lets it also take the ciphertexts of recently created live tensors with at
most that many levels left: fewer rounds for the same work.

A refresh overwrites the ciphertext *in place*, in every slot that holds it (``container[key] =
fresh``): tensors keep their identity, and any tensor sharing that chunk list sees the fresh
ciphertext too (same value, level 0). A batch tensor whose ciphertexts are refreshed forgets its
cached powers (they were computed from the old ciphertext, at higher levels).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rhode.errors import ParameterError
from rhode.tensor.cipher_tensor import CipherBatch, CipherTensor
from rhode.tensor.counters import OpCounters


@dataclass(eq=False)
class Slot:
    """One place where a tensor holds a ciphertext: ``container[key]``.

    Attributes:
        owner: the tensor (a batch tensor's powers are forgotten when the slot is refreshed).
        container: one of its chunk lists (key: chunk index) or form dicts (key: form).
        key: the index or form.
    """

    owner: CipherTensor
    container: list | dict
    key: int | str

    @property
    def ct(self):
        """The ciphertext held here now."""
        return self.container[self.key]

    def replace(self, ct) -> None:
        """Overwrite the ciphertext here (in place; the owner's powers cache is cleared)."""
        self.container[self.key] = ct
        if isinstance(self.owner, CipherBatch):
            self.owner.forget_powers()


@dataclass(eq=False)
class LevelNeed:
    """An operand of the next operation: its slot and the levels the operation spends on it."""

    slot: Slot
    cost: int


@dataclass(eq=False)
class RefreshItem:
    """One ciphertext of a refresh round and every slot that holds it (all are overwritten)."""

    ct: object
    slots: list[Slot] = field(default_factory=list)


def slots_of(t: CipherTensor) -> list[Slot]:
    """Every slot of a tensor: a batch tensor's chunk lists (parts and cached layouts, each list
    once), a parameter's forms and pending parts."""
    if isinstance(t, CipherBatch):
        conts = {id(c): c for c in list(t.parts.values()) + list(t.full.values())}
        return [Slot(t, c, q) for c in conts.values() for q in range(len(c))]
    return [Slot(t, t.forms, f) for f in t.forms] + [Slot(t, t.pending, f) for f in t.pending]


def needs(owner: CipherTensor, container: list | dict, cost: int, keys: Iterable | None = None
          ) -> list[LevelNeed]:
    """``cost`` levels on each ciphertext of ``container`` (a chunk list: every index; a form dict:
    the forms in ``keys``, default all)."""
    if keys is None:
        keys = list(container) if isinstance(container, dict) else range(len(container))
    return [LevelNeed(Slot(owner, container, k), cost) for k in keys]


class LevelManager:
    """Refresh decisions and rounds of one backend.

    Args:
        ev: the evaluator (levels of ciphertexts, ``usable_levels``).
        refresh: the refresh hook: a list of ciphertexts -> the same values at level 0 (one round).
        counters: where refresh rounds and refreshed ciphertexts are counted (op "refresh").
        eager_margin: see the module docstring (``None``: only the operands that need it).
    """

    def __init__(self, ev, refresh: Callable[[list], list], counters: OpCounters,
                 eager_margin: int | None = 2) -> None:
        self.ev = ev
        self.usable = ev.usable_levels
        self.eager_margin = eager_margin
        self._hook = refresh
        self._counters = counters
        self._recent: deque = deque(maxlen=64)

    def track(self, t: CipherTensor) -> None:
        """Remember a newly created tensor as a candidate for eager refresh (weakly)."""
        self._recent.append(weakref.ref(t))

    def level(self, t: CipherTensor) -> int:
        """Highest level among the ciphertexts the tensor holds (0 = fresh)."""
        return max((self.ev.level(ct) for ct in t.ciphertexts()), default=0)

    def ensure(self, reqs: Iterable[LevelNeed]) -> None:
        """Refresh, in one round, every needed ciphertext whose level + cost would exceed the usable
        levels (with the eager candidates); nothing if none would.

        Raises:
            ParameterError: if one operation costs more levels than a refreshed ciphertext has.
        """
        due: dict[int, RefreshItem] = {}
        for r in reqs:
            if r.cost > self.usable:
                raise ParameterError(
                    f"an operation needs {r.cost} levels but a refreshed ciphertext has only {self.usable} "
                    f"(preset {self.ev.params.name!r}); use a deeper preset or a lower polynomial degree")
            ct = r.slot.ct
            if self.ev.level(ct) + r.cost > self.usable:
                due.setdefault(id(ct), RefreshItem(ct)).slots.append(r.slot)
        if due:
            if self.eager_margin is not None:
                self._add_eager(due)
            self._run(list(due.values()))

    def _add_eager(self, due: dict[int, RefreshItem]) -> None:
        """Add to a due round the ciphertexts of recent live tensors with few levels left."""
        floor = self.usable - self.eager_margin
        for ref in self._recent:
            t = ref()
            if t is None:
                continue
            for slot in slots_of(t):
                ct = slot.ct
                if id(ct) in due:
                    due[id(ct)].slots.append(slot)
                elif self.ev.level(ct) >= max(floor, 1):
                    due[id(ct)] = RefreshItem(ct, [slot])

    def refresh_now(self, tensors: Iterable[CipherTensor]) -> None:
        """Refresh every ciphertext the tensors hold above level 0, now, in one round."""
        items: dict[int, RefreshItem] = {}
        for slot in (s for t in tensors for s in slots_of(t)):
            ct = slot.ct
            if self.ev.level(ct) > 0:
                items.setdefault(id(ct), RefreshItem(ct)).slots.append(slot)
        if items:
            self._run(list(items.values()))

    def _run(self, items: list[RefreshItem]) -> None:
        """One refresh round: the hook on the items' ciphertexts, then every slot overwritten."""
        with self._counters.scope("refresh"):
            fresh = self._hook([it.ct for it in items])
            if len(fresh) != len(items):
                raise ParameterError("the refresh hook returned a different number of ciphertexts")
            for it, new in zip(items, fresh, strict=True):
                for slot in it.slots:
                    slot.replace(new)
            self._counters.bump("refresh", "refreshes")
            self._counters.bump("refresh", "refreshed_ciphertexts", len(items))
