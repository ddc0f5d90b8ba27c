"""The products of the cipher backend: affine / affine_t (one rotate-and-sum for all pairs), outer
and batch_sum (left unreduced over the samples of a chunk until used).

:class:`ProductOps` is mixed into :class:`rhode.tensor.cipher.CipherBackend`, which defines the
counted Backend methods and the layout/form resolution these use (``_cts``, ``_plain``, ``_form``).
Layout rules: :mod:`rhode.packing.policy`; levels: :mod:`rhode.tensor.levels`.
"""

from __future__ import annotations

from rhode.errors import ParameterError
from rhode.packing import Layout, aligned_form, bias_form, contract_levels, product_layout, weight_form
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, PlainBatch, target_layout
from rhode.tensor.levels import needs


class ProductOps:
    """Implementation of the products (see the Backend methods of CipherBackend for their levels)."""

    def _check_pairs(self, pairs, transposed: bool) -> tuple[int, int]:
        if not pairs:
            raise ParameterError("affine needs at least one (input, weight) pair")
        b, out = None, None
        for x, w in pairs:
            if not isinstance(w, CipherParam) or len(w.shape) != 2:
                raise ParameterError("the weights of an affine must be encrypted 2-D parameters")
            xs = x.shape
            n_in, n_out = (w.shape[1], w.shape[0]) if transposed else w.shape
            if len(xs) != 2 or xs[1] != n_in:
                raise ParameterError(f"cannot multiply a {xs} batch tensor by a {w.shape} weight"
                                     f"{' transposed' if transposed else ''}")
            if b is not None and (xs[0] != b or n_out != out):
                raise ParameterError("all terms of an affine must have the same batch and output sizes")
            b, out = xs[0], n_out
        return b, out

    def _contract(self, pairs, bias, lin: str, transposed: bool) -> list:
        """Chunks of sum_i x_i @ w_i (or @ w_i.T) (+ bias), inputs in layout ``lin``."""
        form = weight_form(lin, transposed)
        cost = contract_levels(lin)
        enc = [(x, w) for x, w in pairs if isinstance(x, CipherBatch)]
        plain = [(x, w) for x, w in pairs if isinstance(x, PlainBatch)]
        xcts = [self._cts(x, lin) for x, _ in enc]
        for _, w in pairs:
            self._form(w, form)
        reqs = [r for xc, (x, _) in zip(xcts, enc, strict=True) for r in needs(x, xc, cost)]
        reqs += [r for _, w in pairs for r in needs(w, w.forms, cost, [form])]
        bform = None
        if bias is not None:
            bform = bias_form(lin)
            self._form(bias, bform)
            reqs += needs(bias, bias.forms, 0 if lin == Layout.C else 1, [bform])
        self.levels.ensure(reqs)
        pts = [self._plain(x, lin) for x, _ in plain]
        bct = bias.forms[bform] if bias is not None else None
        out = []
        for q in range(self.plan.n_chunks(pairs[0][0].shape[0])):
            ctp = [(xc[q], w.forms[form]) for xc, (_, w) in zip(xcts, enc, strict=True)]
            ptp = [(w.forms[form], pt[q]) for pt, (_, w) in zip(pts, plain, strict=True)]
            out.append(self.kernels.contract(lin, ctp, ptp, before=bct if lin == Layout.R else None,
                                             after=bct if lin == Layout.C else None))
        return out

    def _product(self, name: str, pairs, bias, transposed: bool) -> CipherBatch:
        pairs = list(pairs)
        b, m = self._check_pairs(pairs, transposed)
        if bias is not None and (not isinstance(bias, CipherParam) or bias.shape != (m,)):
            raise ParameterError(f"the bias of an affine with {m} outputs must be an encrypted ({m},) "
                                 "parameter")
        enc = [x for x, _ in pairs if isinstance(x, CipherBatch)]
        if not enc:     # only plaintext inputs: let the first consumer pick the output layout

            def maker(layout: str) -> list:
                with self._scope(name):
                    return self._contract(pairs, bias, product_layout(layout), transposed)

            return CipherBatch((b, m), self._next(), maker=maker)
        lin = target_layout(*enc)
        cts = self._contract(pairs, bias, lin, transposed)
        return CipherBatch((b, m), self._next(), {product_layout(lin): cts})

    @staticmethod
    def _outer_layouts(x, d) -> list[tuple[Layout, Layout]]:
        """(layout of x, layout of d) for each product of an outer (several for a mixed d)."""
        if isinstance(x, PlainBatch) and len(d.parts) > 1:     # mixed d: one product per part
            return [(product_layout(ld), Layout(ld)) for ld in d.parts]
        if isinstance(x, PlainBatch):
            ld = target_layout(d)
            return [(ld.other, ld)]
        if isinstance(d, PlainBatch):
            lx = target_layout(x)
            return [(lx, lx.other)]

        def score(lx: str, ld: str) -> tuple:
            newest = max((x, d), key=lambda t: t.seq)
            keeps = (lx if newest is x else ld) == newest.pref
            return ((lx not in x.full) + (ld not in d.full), not keeps)

        return [min(((Layout.C, Layout.R), (Layout.R, Layout.C)), key=lambda c: score(*c))]

    def _outer(self, x, d) -> CipherParam:
        if x.shape[0] != d.shape[0] or len(x.shape) != 2 or len(d.shape) != 2:
            raise ParameterError(f"outer needs two batch tensors with the same batch, got {x.shape}, "
                                 f"{d.shape}")
        shape = (x.shape[1], d.shape[1])
        if isinstance(x, PlainBatch) and isinstance(d, PlainBatch):
            return self.param(x.array.T @ d.array)
        combos = self._outer_layouts(x, d)
        pending = {}
        for lx, ld in combos:
            ops = []
            for t, lay in ((x, lx), (d, ld)):
                if isinstance(t, PlainBatch):
                    ops.append(("pt", self._plain(t, lay)))
                else:
                    cts = d.parts[ld] if (t is d and len(combos) > 1) else self._cts(t, lay)
                    ops.append(("ct", cts))
            self.levels.ensure([r for (kind, cts), t in zip(ops, (x, d), strict=True) if kind == "ct"
                                for r in needs(t, cts, 1)])
            (kx, cx), (kd, cd) = ops
            ctp, ptp = [], []
            for q in range(len(cx)):
                if kx == "ct" and kd == "ct":
                    ctp.append((cx[q], cd[q]))
                elif kx == "ct":
                    ptp.append((cx[q], cd[q]))
                else:
                    ptp.append((cd[q], cx[q]))
            pending[aligned_form(ld)] = self.ev.mul_sum(ctp, ptp)
        return CipherParam(shape, self._next(), pending=pending)

    def _batch_sum(self, d) -> CipherParam:
        if isinstance(d, PlainBatch):
            return self.param(d.array.sum(axis=0))
        if d.deferred:
            self._cts(d, target_layout(d))
        pending = {}
        for lay, cts in d.parts.items():
            s = cts[0]
            for ct in cts[1:]:
                s = self.ev.add(s, ct)
            pending[aligned_form(lay)] = s
        return CipherParam((d.shape[1],), self._next(), pending=pending)
