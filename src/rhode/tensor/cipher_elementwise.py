"""Elementwise operations of the cipher backend on parameters and batch tensors: sums (kept lazy
across layouts), the bias broadcast over a batch, and the unary maps (neg, scale, add_const, poly).

:class:`ElementwiseOps` is mixed into :class:`rhode.tensor.cipher.CipherBackend`, which defines the
counted Backend methods (add, sub, mul, neg, scale, add_const, poly) and the layout/form resolution
these use (``_cts``, ``_plain``, ``_form``, ``_materialize``). Layout rules: :mod:`rhode.packing.policy`;
levels: :mod:`rhode.tensor.levels`.
"""

from __future__ import annotations

from rhode.errors import ParameterError
from rhode.packing import Form, aligned_form
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, PlainBatch, target_layout
from rhode.tensor.levels import needs


class ElementwiseOps:
    """Implementation of the elementwise operations (levels: the Backend methods of CipherBackend)."""

    def _param_binary(self, a: CipherParam, b: CipherParam, op: str) -> CipherParam:
        if a.shape != b.shape:
            raise ParameterError(f"cannot combine parameters of shapes {a.shape} and {b.shape}")
        if op != "mul" and a.pending and b.pending:
            parts = dict(a.pending)
            for f, ct in b.pending.items():
                if f in parts:
                    parts[f] = self.ev.add(parts[f], ct) if op == "add" else self.ev.sub(parts[f], ct)
                else:
                    parts[f] = ct if op == "add" else self.ev.neg(ct)
            return CipherParam(a.shape, self._next(), pending=parts)
        self._materialize(a)
        self._materialize(b)
        common = [f for f in (Form.NAT, Form.T) if f in a.forms and f in b.forms]
        form = common[0] if common else Form.NAT
        self._form(a, form)
        self._form(b, form)
        cost = 1 if op == "mul" else 0
        self.levels.ensure(needs(a, a.forms, cost, [form]) + needs(b, b.forms, cost, [form]))
        fn = {"add": self.ev.add, "sub": self.ev.sub, "mul": self.ev.mul}[op]
        return CipherParam(a.shape, self._next(), forms={form: fn(a.forms[form], b.forms[form])})

    def _bias_broadcast(self, x, bias: CipherParam, sign: int, bias_first: bool):
        """x (b, m) +- bias (m,) (bias_first: bias - x)."""
        if len(bias.shape) != 1 or bias.shape[0] != x.shape[1]:
            raise ParameterError(f"cannot add a parameter of shape {bias.shape} to a batch tensor of "
                                 f"shape {x.shape}")
        ev = self.ev

        def combine(lay: str) -> list:
            bf = self._form(bias, aligned_form(lay))
            if isinstance(x, PlainBatch):
                pts = self._plain(x, lay)
                if sign > 0:
                    return [ev.add_plain(bf, pt) for pt in pts]
                return [ev.sub_plain(bf, pt) if bias_first else ev.add_plain(ev.neg(bf), pt) for pt in pts]
            cts = self._cts(x, lay)
            if sign > 0:
                return [ev.add(ct, bf) for ct in cts]
            return [ev.sub(bf, ct) if bias_first else ev.sub(ct, bf) for ct in cts]

        if isinstance(x, PlainBatch):
            def maker(layout: str) -> list:
                with self._scope("add"):
                    return combine(layout)
            return CipherBatch(x.shape, self._next(), maker=maker)
        lay = target_layout(x)
        return CipherBatch(x.shape, self._next(), {lay: combine(lay)})

    def _addsub(self, a, b, sign: int):
        ev = self.ev
        if isinstance(a, PlainBatch) and isinstance(b, PlainBatch):
            return PlainBatch(a.array + sign * b.array)
        if isinstance(a, CipherParam) and isinstance(b, CipherParam):
            return self._param_binary(a, b, "add" if sign > 0 else "sub")
        if isinstance(b, CipherParam):
            return self._bias_broadcast(a, b, sign, bias_first=False)
        if isinstance(a, CipherParam):
            return self._bias_broadcast(b, a, sign, bias_first=True)
        if a.shape != b.shape:
            raise ParameterError(f"cannot combine batch tensors of shapes {a.shape} and {b.shape}")
        if isinstance(a, PlainBatch) or isinstance(b, PlainBatch):
            enc, pl = (b, a) if isinstance(a, PlainBatch) else (a, b)
            lay = target_layout(enc)
            cts, pts = self._cts(enc, lay), self._plain(pl, lay)
            if sign > 0:
                out = [ev.add_plain(c, p) for c, p in zip(cts, pts, strict=True)]
            elif enc is a:
                out = [ev.sub_plain(c, p) for c, p in zip(cts, pts, strict=True)]
            else:
                out = [ev.add_plain(ev.neg(c), p) for c, p in zip(cts, pts, strict=True)]
            return CipherBatch(a.shape, self._next(), {lay: out})
        newest = max((a, b), key=lambda t: t.seq)
        common = set(a.full) & set(b.full)
        if common or a.deferred or b.deferred:
            lay = target_layout(a, b)
            pa, pb = {lay: self._cts(a, lay)}, {lay: self._cts(b, lay)}
        else:
            pa, pb = a.parts, b.parts
        parts = dict(pa)
        for lay, cts in pb.items():
            if lay in parts:
                fn = ev.add if sign > 0 else ev.sub
                parts[lay] = [fn(x, y) for x, y in zip(parts[lay], cts, strict=True)]
            else:
                parts[lay] = list(cts) if sign > 0 else [ev.neg(c) for c in cts]
        return CipherBatch(a.shape, self._next(), parts,
                           pref=newest.pref if newest.pref in parts else None)

    def _unary(self, a, fn, cost: int, linear: bool):
        """Apply ``fn`` (ciphertext -> ciphertext) to every ciphertext of a; linear maps act on each
        part of a lazy sum / pending gradient separately."""
        if isinstance(a, CipherParam):
            if linear and a.pending:
                self.levels.ensure(needs(a, a.pending, cost))
                return CipherParam(a.shape, self._next(), pending={f: fn(ct) for f, ct in a.pending.items()})
            self._materialize(a)
            form = self._primary(a)
            self.levels.ensure(needs(a, a.forms, cost, [form]))
            return CipherParam(a.shape, self._next(), forms={form: fn(a.forms[form])})
        if linear and not a.deferred:
            parts = a.parts
        else:
            lay = target_layout(a)
            parts = {lay: self._cts(a, lay)}
        self.levels.ensure([r for cts in parts.values() for r in needs(a, cts, cost)])
        return CipherBatch(a.shape, self._next(), {lay: [fn(ct) for ct in cts] for lay, cts in parts.items()},
                           pref=a.pref if a.pref in parts else None)
