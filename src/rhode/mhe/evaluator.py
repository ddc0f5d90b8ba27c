"""Secret-free CKKS arithmetic over one :class:`~rhode.mhe.context.MheContext`, with operation counters.

The cipher tensor backend calls only this facade (never OpenFHE directly). Every method works on
ciphertexts under the joint key and holds no secret; the evaluation keys it needs (relinearization,
rotations) are the joint keys the parties generated collectively.

Levels: ``level(ct)`` is the *effective* level, the number of rescalings a ciphertext has undergone
plus one if a rescale is pending (FIXEDAUTO rescales lazily, before the next product). A fresh or
refreshed ciphertext is at level 0; products (ct x ct, ct x pt, ct x constant) consume one level;
additions, negation and rotations consume none.

Counters (``counts``): ``rotations`` (all, hoisted included), ``hoisted_rotations``,
``ct_ct_mults``, ``ct_pt_mults``, ``const_mults``, ``relinearizations``, ``rescalings`` (one per
product operand that carries a pending rescale, plus the levels a Chebyshev series spends inside),
``additions``, ``encodings``, ``encryptions``, ``chebyshev_series``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import openfhe as fhe

from rhode.errors import ParameterError
from rhode.mhe.context import Ciphertext, MheContext

Plaintext = fhe.Plaintext

COUNTERS = ("rotations", "hoisted_rotations", "ct_ct_mults", "ct_pt_mults", "const_mults",
            "relinearizations", "rescalings", "additions", "encodings", "encryptions",
            "chebyshev_series")


class Evaluator:
    """Arithmetic on ciphertexts of one context.

    Args:
        context: the shared public context (joint public key and evaluation keys installed).

    Attributes:
        params: the CKKS parameters; ``usable_levels`` levels may be spent between refreshes.
        slots: slots per ciphertext.
        counts: operation counters (see module docstring); :meth:`reset_counts` zeroes them.
    """

    def __init__(self, context: MheContext) -> None:
        self.context = context
        self.cc = context.cc
        self.params = context.params
        self.slots: int = context.params.slots
        self.counts: Counter = Counter(dict.fromkeys(COUNTERS, 0))
        self._cheb_levels: dict[tuple, int] = {}
        self._order = self.cc.GetCyclotomicOrder()

    def __repr__(self) -> str:
        return f"Evaluator(preset={self.params.name!r}, slots={self.slots})"

    @property
    def usable_levels(self) -> int:
        """Levels a level-0 ciphertext may spend and still be refreshed."""
        return self.params.usable_levels

    def reset_counts(self) -> None:
        """Zero every counter."""
        self.counts = Counter(dict.fromkeys(COUNTERS, 0))

    # -- levels -----------------------------------------------------------------------------------
    @staticmethod
    def level(ct: Ciphertext) -> int:
        """Effective level: rescalings done + 1 if one is pending (0 = fresh or refreshed)."""
        return ct.GetLevel() + ct.GetNoiseScaleDeg() - 1

    def _pending(self, *cts: Ciphertext) -> None:
        seen = set()
        for ct in cts:
            if id(ct) not in seen and ct.GetNoiseScaleDeg() > 1:
                self.counts["rescalings"] += 1
            seen.add(id(ct))

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, values: np.ndarray) -> Plaintext:
        """Plaintext of a real slot vector (length <= slots), at level 0 (usable at any level;
        :meth:`MheContext.encode <rhode.mhe.context.MheContext.encode>`)."""
        self.counts["encodings"] += 1
        return self.context.encode(values)

    def encrypt(self, values: np.ndarray) -> Ciphertext:
        """Encrypt a real slot vector at level 0 under the joint public key."""
        self.counts["encryptions"] += 1
        return self.cc.Encrypt(self.context.require_public_key(), self.encode(values))

    # -- additive ---------------------------------------------------------------------------------
    def add(self, a: Ciphertext, b: Ciphertext | Plaintext | float) -> Ciphertext:
        """a + b for a ciphertext, a plaintext or a real constant b (no level; levels: max of the two)."""
        self.counts["additions"] += 1
        return self.cc.EvalAdd(a, b)

    def sub(self, a: Ciphertext, b: Ciphertext | Plaintext) -> Ciphertext:
        """a - b for a ciphertext or a plaintext b (no level)."""
        self.counts["additions"] += 1
        return self.cc.EvalSub(a, b)

    def add_plain(self, a: Ciphertext, p: Plaintext) -> Ciphertext:
        """a + p for a plaintext p (:meth:`add`)."""
        return self.add(a, p)

    def sub_plain(self, a: Ciphertext, p: Plaintext) -> Ciphertext:
        """a - p for a plaintext p (:meth:`sub`)."""
        return self.sub(a, p)

    def add_const(self, a: Ciphertext, c: float) -> Ciphertext:
        """a + c in every slot (no level)."""
        return self.add(a, float(c))

    def neg(self, a: Ciphertext) -> Ciphertext:
        """-a (no level)."""
        return self.cc.EvalNegate(a)

    # -- multiplicative -----------------------------------------------------------------------------
    def mul(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """a * b slot-wise, relinearized (1 level)."""
        self.counts["ct_ct_mults"] += 1
        self.counts["relinearizations"] += 1
        self._pending(a, b)
        return self.cc.EvalMult(a, b)

    def mul_sum(self, pairs: Sequence[tuple[Ciphertext, Ciphertext]],
                plain_pairs: Sequence[tuple[Ciphertext, Plaintext]] = ()) -> Ciphertext:
        """sum_i a_i * b_i + sum_j c_j * p_j with ONE relinearization for all ct x ct terms (1 level)."""
        if not pairs and not plain_pairs:
            raise ValueError("mul_sum needs at least one product")
        acc = None
        for a, b in pairs:
            self.counts["ct_ct_mults"] += 1
            self._pending(a, b)
            t = self.cc.EvalMultNoRelin(a, b)
            acc = t if acc is None else self.add(acc, t)
        if acc is not None:
            self.counts["relinearizations"] += 1
            acc = self.cc.Relinearize(acc)
        for c, p in plain_pairs:
            t = self.mul_plain(c, p)
            acc = t if acc is None else self.add(acc, t)
        return acc

    def mul_plain(self, a: Ciphertext, p: Plaintext) -> Ciphertext:
        """a * p slot-wise for a plaintext p (1 level)."""
        self.counts["ct_pt_mults"] += 1
        self._pending(a)
        return self.cc.EvalMult(a, p)

    def mul_const(self, a: Ciphertext, c: float) -> Ciphertext:
        """c * a for a real constant (1 level; -1 and 1 cost nothing)."""
        c = float(c)
        if c == 1.0:
            return a
        if c == -1.0:
            return self.neg(a)
        self.counts["const_mults"] += 1
        self._pending(a)
        return self.cc.EvalMult(a, c)

    # -- rotations --------------------------------------------------------------------------------
    def rotate(self, a: Ciphertext, r: int) -> Ciphertext:
        """out[s] = a[s + r] (needs the rotation key of r; no level)."""
        if r == 0:
            return a
        self.counts["rotations"] += 1
        return self.cc.EvalRotate(a, int(r))

    def rotate_hoisted(self, a: Ciphertext, offsets: Sequence[int]) -> list[Ciphertext]:
        """Several rotations of one ciphertext sharing one precomputation (0 -> a itself)."""
        nonzero = [r for r in offsets if r != 0]
        if len(nonzero) <= 1:
            return [self.rotate(a, r) for r in offsets]
        pre = self.cc.EvalFastRotationPrecompute(a)
        out = []
        for r in offsets:
            if r == 0:
                out.append(a)
                continue
            self.counts["rotations"] += 1
            self.counts["hoisted_rotations"] += 1
            out.append(self.cc.EvalFastRotation(a, int(r), self._order, pre))
        return out

    def rotate_sum(self, a: Ciphertext, offsets: Sequence[int]) -> Ciphertext:
        """Rotate-and-add doubling: a <- a + rotate(a, r) for each r in turn (no level)."""
        for r in offsets:
            a = self.add(a, self.rotate(a, r))
        return a

    # -- polynomials ------------------------------------------------------------------------------
    def chebyshev(self, a: Ciphertext, coeffs: Sequence[float], lo: float, hi: float) -> Ciphertext:
        """sum_k coeffs[k] T_k(u), u = (2x - lo - hi) / (hi - lo), numpy convention (OpenFHE's
        series evaluates c0/2 + sum_k>0 c_k T_k, so c0 is doubled here; levels:
        :meth:`chebyshev_levels`)."""
        self.counts["chebyshev_series"] += 1
        before = self.level(a)
        c = [float(v) for v in coeffs]
        c[0] *= 2.0
        out = self.cc.EvalChebyshevSeries(a, c, float(lo), float(hi))
        self.counts["rescalings"] += max(0, self.level(out) - before - 1)
        return out

    def chebyshev_levels(self, degree: int, lo: float, hi: float) -> int:
        """Levels OpenFHE's Chebyshev series of this degree on [lo, hi] consumes (measured once on an
        encryption of zeros, then cached)."""
        key = (int(degree), float(lo), float(hi))
        if key not in self._cheb_levels:
            probe = self.context.encrypt(np.zeros(1))  # not counted
            coeffs = [0.0] * degree + [1.0]
            try:
                out = self.cc.EvalChebyshevSeries(probe, coeffs, float(lo), float(hi))
            except Exception as exc:
                raise ParameterError(
                    f"a Chebyshev series of degree {degree} does not fit depth {self.params.depth}: "
                    f"{exc}; lower the degree or use a deeper preset") from None
            self._cheb_levels[key] = self.level(out)
        return self._cheb_levels[key]
