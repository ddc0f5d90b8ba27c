"""Packed linear algebra on single ciphertexts: products with rotate-and-sum, layout conversions,
the parameter transposition and the batch reduction. Each kernel states the levels it consumes;
rotations per call are given in docs/packing.md.

The kernels do no level management: :class:`rhode.tensor.cipher.CipherBackend` refreshes operands
before calling them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rhode.mhe.evaluator import Evaluator
from rhode.packing import PackingPlan, mask, rotate, valid_region


class Kernels:
    """Kernels for one packing plan; plaintext masks are encoded once and cached."""

    def __init__(self, ev: Evaluator, plan: PackingPlan) -> None:
        self.ev = ev
        self.plan = plan
        self._masks: dict[tuple, object] = {}

    def mask(self, **kw):
        """Cached plaintext of :func:`rhode.packing.mask` (keywords as there)."""
        key = tuple(sorted(kw.items()))
        if key not in self._masks:
            self._masks[key] = self.ev.encode(mask(self.plan, **kw))
        return self._masks[key]

    def _rotated_mask(self, r: int, **kw):
        key = ("rot", r) + tuple(sorted(kw.items()))
        if key not in self._masks:
            self._masks[key] = self.ev.encode(rotate(mask(self.plan, **kw), r))
        return self._masks[key]

    def prepare(self, shapes) -> int:
        """Encode now every mask the kernels use for parameters of these shapes (the products,
        conversions, transpositions and batch reductions). Returns the number of masks cached."""
        p, t = self.plan, self.plan.transpose
        self.mask(j0=True)
        self.mask(diag=True)
        k0 = {"k0": True} if p.c > 1 else {}
        extras = [{}]
        for shape in shapes:
            for form in ("nat", "T"):
                self.mask(**k0, **valid_region(shape, form))
            if len(shape) == 1:
                self.mask(diag=True, **k0, **valid_region(shape, "T"))
            else:
                extras.append({**k0, **valid_region(shape, "T")})
        for extra in extras:
            for _, bb, delta in t.terms:
                self._rotated_mask(t.baby[bb], delta=delta, **extra)
        return len(self._masks)

    # -- products ---------------------------------------------------------------------------------
    def contract(self, layout_in: str, ct_pairs: Sequence, pt_pairs: Sequence, *, before=None,
                 after=None):
        """sum of slot-wise products, then the sum over the contracted index.

        layout_in "C": sum over i (exact everywhere) -> output in R; 1 level. ``after`` (a
        ciphertext in R, e.g. a bias in nat form) is added at the end.
        layout_in "R": sum over j (valid at j = 0), mask j = 0, replicate over j -> output in C;
        2 levels. ``before`` (a ciphertext whose sum over j is wanted at j = 0, e.g. a diag-masked
        bias) is added before the sum.
        ct_pairs: (ciphertext, ciphertext) products; pt_pairs: (ciphertext, plaintext) products.
        """
        ev, p = self.ev, self.plan
        s = ev.mul_sum(ct_pairs, pt_pairs)
        if layout_in == "C":
            s = ev.rotate_sum(s, p.sum_i)
            return s if after is None else ev.add(s, after)
        if before is not None:
            s = ev.add(s, before)
        s = ev.rotate_sum(s, p.sum_j)
        s = ev.mul_plain(s, self.mask(j0=True))
        return ev.rotate_sum(s, p.rep_j)

    # -- layout conversions -------------------------------------------------------------------------
    def c_to_r(self, ct):
        """Batch tensor C -> R: mask i == j, sum over i. 1 level, log2 H rotations."""
        return self.ev.rotate_sum(self.ev.mul_plain(ct, self.mask(diag=True)), self.plan.sum_i)

    def r_to_c(self, ct):
        """Batch tensor R -> C: mask i == j, sum over j, mask j = 0, replicate over j. 2 levels,
        2 log2 H rotations."""
        ev, p = self.ev, self.plan
        s = ev.rotate_sum(ev.mul_plain(ct, self.mask(diag=True)), p.sum_j)
        return ev.rotate_sum(ev.mul_plain(s, self.mask(j0=True)), p.rep_j)

    def convert(self, ct, src: str, dst: str):
        """Batch tensor from layout src to dst (identity if equal)."""
        if src == dst:
            return ct
        return self.c_to_r(ct) if src == "C" else self.r_to_c(ct)

    # -- parameters ---------------------------------------------------------------------------------
    def transpose(self, ct, **extra):
        """nat <-> T of an H x H matrix by its 2H-1 diagonals, baby-step giant-step with hoisted baby
        rotations. ``extra``: mask keywords multiplied into every diagonal mask (source coordinates).
        1 level; (g - 1) hoisted + (number of nonzero giant steps) rotations."""
        ev, t = self.ev, self.plan.transpose
        babies = ev.rotate_hoisted(ct, t.baby)
        out = None
        for a, G in enumerate(t.giant):
            pairs = [(babies[bb], self._rotated_mask(t.baby[bb], delta=delta, **extra))
                     for aa, bb, delta in t.terms if aa == a]
            if not pairs:
                continue
            inner = ev.rotate(ev.mul_sum((), pairs), G)
            out = inner if out is None else ev.add(out, inner)
        return out

    def bias_t_to_nat(self, ct, **extra):
        """Bias T -> nat: mask i == j (and ``extra``), sum over i. 1 level, log2 H rotations."""
        return self.ev.rotate_sum(self.ev.mul_plain(ct, self.mask(diag=True, **extra)), self.plan.sum_i)

    def form(self, ct, shape: tuple[int, ...], src: str, dst: str):
        """Parameter from form src to dst ("nat"/"T"), or to "diag" (b[i] at i == j; biases). 1 level."""
        if src == dst:
            return ct
        if dst == "diag":
            return self.ev.mul_plain(ct, self.mask(diag=True))
        if len(shape) == 1 and src == "T":
            return self.bias_t_to_nat(ct)
        return self.transpose(ct)

    def reduce_batch(self, parts: dict[str, object], shape: tuple[int, ...]) -> tuple[str, object]:
        """Sum per-sample contributions over the samples of a chunk (valid at k = 0), keep only the
        parameter's region, bring a T part into nat if both exist, replicate over k.

        parts: {"nat": ct, "T": ct} (one or both), unreduced over k. Returns (form, ciphertext);
        the form is nat when both parts exist. 1 level; per part log2 c (+ transposition) rotations,
        then log2 c."""
        ev, p = self.ev, self.plan
        target = "nat" if len(parts) > 1 else next(iter(parts))
        k0 = {"k0": True} if p.c > 1 else {}
        out = None
        for form, v in parts.items():
            v = ev.rotate_sum(v, p.sum_k)
            region = {**k0, **valid_region(shape, form)}
            if form == target:
                y = ev.mul_plain(v, self.mask(**region))
            elif len(shape) == 1:
                y = self.bias_t_to_nat(v, **region)
            else:
                y = self.transpose(v, **region)
            out = y if out is None else ev.add(out, y)
        return target, ev.rotate_sum(out, p.rep_k)
