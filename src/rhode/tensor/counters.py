"""Operation counters of the cipher backend, charged to the operation that caused them.

The evaluator counts every primitive (rotations, products, rescalings, ...). :class:`OpCounters`
attributes the increments to the innermost open *scope*: a Backend method, or one of the internal
steps convert (layout conversions), transpose, bias_diag, batch_reduce and refresh, each charged
exclusively (an affine's conversion counts under convert, not affine). It also keeps the counters the
evaluator does not see: refresh rounds and refreshed ciphertexts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from contextlib import contextmanager

from rhode.mhe.evaluator import COUNTERS

RUN_COUNTERS = ("refreshes", "refreshed_ciphertexts")


class OpCounters:
    """Counts of one backend on an evaluator (several backends may share an evaluator)."""

    def __init__(self, ev) -> None:
        self.ev = ev
        self._scopes: list[str] = []
        self._last = Counter(ev.counts)
        self._by_op: dict[str, Counter] = defaultdict(Counter)

    @contextmanager
    def scope(self, name: str):
        """Charge what the evaluator counts inside the block to ``name`` (nested scopes win)."""
        self._charge()
        self._scopes.append(name)
        try:
            yield
        finally:
            self._charge()
            self._scopes.pop()

    def _charge(self) -> None:
        now, last = self.ev.counts, self._last
        # a counter below its snapshot was reset through another backend sharing the evaluator
        delta = Counter({k: now[k] - last.get(k, 0) if now[k] >= last.get(k, 0) else now[k] for k in now})
        delta = +delta
        if self._scopes and delta:
            self._by_op[self._scopes[-1]].update(delta)
        self._last = Counter(now)

    def bump(self, op: str, key: str, n: int = 1) -> None:
        """Add ``n`` to a counter the evaluator does not keep (e.g. refreshes) under ``op``."""
        self._by_op[op][key] += n

    def counters(self) -> dict:
        """Operation counts since the last reset: ``{"total": {...}, "by_op": {op: {...}}}``.

        Keys: the evaluator's counters (rotations, hoisted_rotations, ct_ct_mults, ct_pt_mults,
        const_mults, relinearizations, rescalings, additions, encodings, encryptions,
        chebyshev_series) plus refreshes (collective rounds) and refreshed_ciphertexts. Operations:
        the Backend methods plus convert (layout conversions), transpose, bias_diag, batch_reduce
        and refresh, each charged exclusively (an affine's conversion counts under convert)."""
        self._charge()
        total = Counter(dict.fromkeys(COUNTERS + RUN_COUNTERS, 0))
        for c in self._by_op.values():
            total.update(c)
        return {"total": dict(total),
                "by_op": {op: {k: v for k, v in c.items() if v} for op, c in sorted(self._by_op.items())}}

    def reset(self) -> None:
        """Zero all counters (the evaluator's included)."""
        self.ev.reset_counts()
        self._last = Counter(self.ev.counts)
        self._by_op.clear()
