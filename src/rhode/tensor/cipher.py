"""The cipher backend: :class:`rhode.tensor.base.Backend` on packed CKKS ciphertexts.

Batch tensors are packed in the R/C layouts and parameters in the nat/T forms of
:mod:`rhode.packing` (see docs/packing.md). Output layouts alternate so that successive products need
no transposition: a product with its input in C gives R (1 level), with its input in R gives C
(2 levels). Where an elementwise operation meets two layouts, sums stay lazy (a tensor may hold an R
part and a C part) and a conversion is made only when a product or polynomial needs one layout; it
is cached on the tensor. Plaintext data operands are encoded in whatever layout the encrypted ones
have. Weight gradients stay unreduced over the batch until they are used (one batch reduction per
weight per step, however many timesteps contributed).

Level management: every ciphertext knows its level. Before an operation that would leave an operand
beyond ``usable_levels`` it calls the refresh hook once on all operands that need it.

Levels consumed (from the operands' level): affine/affine_t 1 (input in C) or 2 (input in R); mul 1;
scale 1 (0 for +-1); poly floor(log2 degree) + 1 (power basis) or OpenFHE's series; outer 1 and its
later batch reduction 1; batch_sum 0 and its reduction 1; layout conversion C->R 1, R->C 2;
transposition 1; add, sub, neg, add_const 0.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager

import numpy as np

from rhode.errors import ParameterError
from rhode.mhe.evaluator import COUNTERS, Evaluator
from rhode.packing import PackingPlan, decode_batch, decode_param, encode_batch, encode_param, mask
from rhode.packing import valid_region as _region
from rhode.tensor.cipher_kernels import Kernels
from rhode.tensor.cipher_poly import PolyPlan, eval_power, plan_poly, power_levels
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, CipherTensor, PlainBatch
from rhode.tensor.poly import ChebyshevPoly

OTHER = {"R": "C", "C": "R"}
RUN_COUNTERS = ("refreshes", "refreshed_ciphertexts")


def _counted(name: str):
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            with self._scope(name):
                out = fn(self, *args, **kwargs)
            if isinstance(out, CipherTensor):
                self._recent.append(weakref.ref(out))
            return out
        return wrapper
    return deco


def _contract_cost(layout_in: str) -> int:
    return 1 if layout_in == "C" else 2


class CipherBackend:
    """Backend on packed ciphertexts.

    Args:
        evaluator: arithmetic on the shared context (joint keys, incl. ``plan.rotation_indices()``).
        plan: the packing (from :func:`rhode.packing.plan`).
        refresh: the refresh hook: a list of ciphertexts (each with at most ``usable_levels`` levels
            spent) -> the same values at level 0, in one collective round.
        eager_margin: when a refresh round is due anyway, it also takes the ciphertexts of recently
            created live tensors that have at most this many levels left (fewer rounds for the same
            work; ``None``: only the operands that need it).
    """

    name = "cipher"

    def __init__(self, evaluator: Evaluator, plan: PackingPlan,
                 refresh: Callable[[list], list], eager_margin: int | None = 2) -> None:
        if plan.slots != evaluator.slots:
            raise ParameterError(
                f"packing plan for {plan.slots} slots does not match the context's {evaluator.slots}")
        missing = evaluator.context.missing_rotations(plan.rotation_indices())
        if missing:
            raise ParameterError(
                f"the context has no joint rotation keys for {len(missing)} offsets this packing uses "
                f"(e.g. {sorted(missing)[:4]}); generate them first with "
                "collective.add_rotation_keys(plan.rotation_indices())")
        self.ev = evaluator
        self.plan = plan
        self.kernels = Kernels(evaluator, plan)
        self.usable = evaluator.usable_levels
        self._refresh_hook = refresh
        self._seq = itertools.count()
        self._scopes: list[str] = []
        self._last = Counter(evaluator.counts)
        self._by_op: dict[str, Counter] = defaultdict(Counter)
        self._poly_plans: dict[ChebyshevPoly, tuple[PolyPlan, int]] = {}
        self.eager_margin = eager_margin
        self._recent: deque = deque(maxlen=64)

    def __repr__(self) -> str:
        return f"CipherBackend(H={self.plan.H}, chunk={self.plan.c}, slots={self.plan.slots})"

    # ================================================================ counters
    @contextmanager
    def _scope(self, name: str):
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

    def reset_counters(self) -> None:
        """Zero all counters (the evaluator's included)."""
        self.ev.reset_counts()
        self._last = Counter(self.ev.counts)
        self._by_op.clear()

    def prepare(self, param_shapes: Iterable[tuple[int, ...]] | dict) -> None:
        """Encode the plaintext masks a model with these parameter shapes needs (one-time work that
        the first training step would otherwise do)."""
        shapes = param_shapes.values() if isinstance(param_shapes, dict) else param_shapes
        with self._scope("prepare"):
            self.kernels.prepare([tuple(s) for s in shapes])

    # ================================================================ levels and refresh
    def _ensure(self, refs: Iterable[tuple]) -> None:
        """refs: (owner, container, key, cost). Refresh, in one round, every ciphertext
        ``container[key]`` whose level + cost would exceed the usable levels."""
        due: dict[int, list] = {}
        for owner, cont, key, cost in refs:
            if cost > self.usable:
                raise ParameterError(
                    f"an operation needs {cost} levels but a refreshed ciphertext has only {self.usable} "
                    f"(preset {self.ev.params.name!r}); use a deeper preset or a lower polynomial degree")
            ct = cont[key]
            if self.ev.level(ct) + cost > self.usable:
                due.setdefault(id(ct), [ct, []])[1].append((owner, cont, key))
        if due:
            if self.eager_margin is not None:
                self._add_eager(due)
            self._refresh_cts(list(due.values()))

    def _add_eager(self, due: dict) -> None:
        """Add to a due round the ciphertexts of recent live tensors with few levels left."""
        floor = self.usable - self.eager_margin
        for ref in self._recent:
            t = ref()
            if t is None:
                continue
            for owner, cont, key in self._places(t):
                ct = cont[key]
                if id(ct) in due:
                    due[id(ct)][1].append((owner, cont, key))
                elif self.ev.level(ct) >= max(floor, 1):
                    due[id(ct)] = [ct, [(owner, cont, key)]]

    @staticmethod
    def _places(t: CipherTensor) -> list[tuple]:
        if isinstance(t, CipherBatch):
            conts = {id(c): c for c in list(t.parts.values()) + list(t.full.values())}
            return [(t, c, q) for c in conts.values() for q in range(len(c))]
        return [(t, t.forms, f) for f in t.forms] + [(t, t.pending, f) for f in t.pending]

    def _refresh_cts(self, items: list) -> None:
        with self._scope("refresh"):
            fresh = self._refresh_hook([ct for ct, _ in items])
            if len(fresh) != len(items):
                raise ParameterError("the refresh hook returned a different number of ciphertexts")
            for (_, places), new in zip(items, fresh, strict=True):
                for owner, cont, key in places:
                    cont[key] = new
                    if isinstance(owner, CipherBatch):
                        owner.forget_powers()
            self._by_op["refresh"]["refreshes"] += 1
            self._by_op["refresh"]["refreshed_ciphertexts"] += len(items)

    def refresh(self, tensors: Iterable[CipherTensor]) -> None:
        """Refresh every ciphertext the tensors hold to level 0 now, in one round (e.g. the
        parameters after an update, so that the next step starts at level 0)."""
        items: dict[int, list] = {}
        for owner, cont, key in (pl for t in tensors for pl in self._places(t)):
            if self.ev.level(cont[key]) > 0:
                items.setdefault(id(cont[key]), [cont[key], []])[1].append((owner, cont, key))
        if items:
            self._refresh_cts(list(items.values()))

    def level(self, t: CipherTensor) -> int:
        """Highest level among the ciphertexts the tensor holds (0 = fresh)."""
        return max((self.ev.level(ct) for ct in t.ciphertexts()), default=0)

    @staticmethod
    def _refs(owner, cont, cost: int) -> list[tuple]:
        return [(owner, cont, q, cost) for q in range(len(cont))]

    # ================================================================ layouts
    def _next(self) -> int:
        return next(self._seq)

    def _target(self, *ts) -> str:
        """Layout for an elementwise operation / product input among encrypted batch tensors: one
        all of them already hold, else the newest operand's layout, else R."""
        enc = [t for t in ts if isinstance(t, CipherBatch)]
        if not enc:
            return "R"
        concrete = sorted((t for t in enc if t.pref is not None), key=lambda t: -t.seq)
        common = set.intersection(*(set(t.full) for t in enc))
        if common:
            for t in concrete:
                if t.pref in common:
                    return t.pref
            return sorted(common)[0]
        return concrete[0].pref if concrete else "R"

    def _cts(self, t: CipherBatch, layout: str) -> list:
        """Chunk ciphertexts of t in ``layout`` (converting, resolving or summing parts; cached)."""
        if layout in t.full:
            return t.full[layout]
        if t.maker is not None:
            cts = list(t.maker(layout))
        else:
            with self._scope("convert"):
                cts = None
                for lay, part in t.parts.items():
                    if lay != layout:
                        self._ensure(self._refs(t, part, _contract_cost(lay)))
                        part = [self.kernels.convert(ct, lay, layout) for ct in part]
                    cts = part if cts is None else [self.ev.add(a, b) for a, b in zip(cts, part, strict=True)]
        t.full[layout] = cts
        if not t.parts:
            t.parts = {layout: cts}
            t.pref = layout
        return cts

    def _plain(self, x: PlainBatch, layout: str) -> list:
        if layout not in x.encoded:
            x.encoded[layout] = [self.ev.encode(v) for v in encode_batch(self.plan, x.array, layout)]
        return x.encoded[layout]

    # ================================================================ parameter forms
    def _materialize(self, p: CipherParam) -> None:
        if not p.pending:
            return
        with self._scope("batch_reduce"):
            self._ensure([(p, p.pending, f, 1) for f in p.pending])
            form, ct = self.kernels.reduce_batch(p.pending, p.shape)
        p.forms = {form: ct}
        p.pending = {}

    def _form(self, p: CipherParam, form: str):
        self._materialize(p)
        if form not in p.forms:
            src = "nat" if "nat" in p.forms else "T"
            with self._scope("bias_diag" if form == "diag" else "transpose"):
                self._ensure([(p, p.forms, src, 1)])
                p.forms[form] = self.kernels.form(p.forms[src], p.shape, src, form)
        return p.forms[form]

    @staticmethod
    def _primary(p: CipherParam) -> str:
        return "nat" if "nat" in p.forms else "T"

    # ================================================================ Backend: construction
    def data(self, x: np.ndarray) -> PlainBatch:
        """Plaintext batch (b, n) owned by the caller; never encrypted."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2:
            raise ParameterError(f"data must be a (batch, features) array, got shape {arr.shape}")
        return PlainBatch(arr)

    @_counted("param")
    def param(self, w: np.ndarray) -> CipherParam:
        """Encrypt a parameter (n, m) or (m,) in nat form (one ciphertext, level 0)."""
        w = np.asarray(w, dtype=np.float64)
        return CipherParam(w.shape, self._next(), forms={"nat": self.ev.encrypt(encode_param(self.plan, w))})

    # ================================================================ Backend: products
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
        # affine: C input meets W (nat), R input meets W^T; affine_t the other way round
        form = "nat" if (lin == "C") != transposed else "T"
        cost = _contract_cost(lin)
        enc = [(x, w) for x, w in pairs if isinstance(x, CipherBatch)]
        plain = [(x, w) for x, w in pairs if isinstance(x, PlainBatch)]
        xcts = [self._cts(x, lin) for x, _ in enc]
        for _, w in pairs:
            self._form(w, form)
        refs = [r for xc, (x, _) in zip(xcts, enc, strict=True) for r in self._refs(x, xc, cost)]
        refs += [(w, w.forms, form, cost) for _, w in pairs]
        bform = None
        if bias is not None:
            bform = "nat" if lin == "C" else "diag"
            self._form(bias, bform)
            refs.append((bias, bias.forms, bform, 0 if lin == "C" else 1))
        self._ensure(refs)
        pts = [self._plain(x, lin) for x, _ in plain]
        bct = bias.forms[bform] if bias is not None else None
        out = []
        for q in range(self.plan.n_chunks(pairs[0][0].shape[0])):
            ctp = [(xc[q], w.forms[form]) for xc, (_, w) in zip(xcts, enc, strict=True)]
            ptp = [(w.forms[form], pt[q]) for pt, (_, w) in zip(pts, plain, strict=True)]
            out.append(self.kernels.contract(lin, ctp, ptp, before=bct if lin == "R" else None,
                                             after=bct if lin == "C" else None))
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
                    return self._contract(pairs, bias, OTHER[layout], transposed)

            return CipherBatch((b, m), self._next(), maker=maker)
        lin = self._target(*enc)
        cts = self._contract(pairs, bias, lin, transposed)
        return CipherBatch((b, m), self._next(), {OTHER[lin]: cts})

    @_counted("affine")
    def affine(self, pairs: Sequence[tuple], bias: CipherParam | None = None) -> CipherBatch:
        """sum_i x_i @ w_i (+ bias): x_i (b, n_i), w_i (n_i, m) -> (b, m). One rotate-and-sum for
        all pairs. Levels: 1 if the inputs are in C (output R), 2 if in R (output C)."""
        return self._product("affine", pairs, bias, transposed=False)

    @_counted("affine_t")
    def affine_t(self, pairs: Sequence[tuple]) -> CipherBatch:
        """sum_i d_i @ w_i.T: d_i (b, m), w_i (n, m) -> (b, n). Levels as :meth:`affine`."""
        return self._product("affine_t", pairs, None, transposed=True)

    @_counted("outer")
    def outer(self, x, d) -> CipherParam:
        """x.T @ d summed over the batch: (b, n), (b, m) -> (n, m), returned unreduced over the
        samples of a chunk (reduced when first used: 1 level then). 1 level. Samples beyond b must be
        zero in x or d (the model's 1/b data factor guarantees it for gradients)."""
        if x.shape[0] != d.shape[0] or len(x.shape) != 2 or len(d.shape) != 2:
            raise ParameterError(f"outer needs two batch tensors with the same batch, got {x.shape}, "
                                 f"{d.shape}")
        shape = (x.shape[1], d.shape[1])
        if isinstance(x, PlainBatch) and isinstance(d, PlainBatch):
            return self.param(x.array.T @ d.array)
        if isinstance(x, PlainBatch) and len(d.parts) > 1:     # mixed d: one product per part
            combos = [(OTHER[ld], ld) for ld in d.parts]
        elif isinstance(x, PlainBatch):
            ld = self._target(d)
            combos = [(OTHER[ld], ld)]
        elif isinstance(d, PlainBatch):
            lx = self._target(x)
            combos = [(lx, OTHER[lx])]
        else:
            def score(lx: str, ld: str) -> tuple:
                newest = max((x, d), key=lambda t: t.seq)
                keeps = (lx if newest is x else ld) == newest.pref
                return ((lx not in x.full) + (ld not in d.full), not keeps)
            combos = [min((("C", "R"), ("R", "C")), key=lambda c: score(*c))]
        pending = {}
        for lx, ld in combos:
            form = "nat" if lx == "C" else "T"
            ops = []
            for t, lay in ((x, lx), (d, ld)):
                if isinstance(t, PlainBatch):
                    ops.append(("pt", self._plain(t, lay)))
                else:
                    cts = d.parts[ld] if (t is d and len(combos) > 1) else self._cts(t, lay)
                    ops.append(("ct", cts))
            self._ensure([r for (kind, cts), t in zip(ops, (x, d), strict=True) if kind == "ct"
                          for r in self._refs(t, cts, 1)])
            (kx, cx), (kd, cd) = ops
            ctp, ptp = [], []
            for q in range(len(cx)):
                if kx == "ct" and kd == "ct":
                    ctp.append((cx[q], cd[q]))
                elif kx == "ct":
                    ptp.append((cx[q], cd[q]))
                else:
                    ptp.append((cd[q], cx[q]))
            pending[form] = self.ev.mul_sum(ctp, ptp)
        return CipherParam(shape, self._next(), pending=pending)

    @_counted("batch_sum")
    def batch_sum(self, d) -> CipherParam:
        """Sum over the batch: (b, m) -> (m,), unreduced over the samples of a chunk until used
        (the reduction costs 1 level then). 0 levels here."""
        if isinstance(d, PlainBatch):
            return self.param(d.array.sum(axis=0))
        if d.deferred:
            self._cts(d, self._target(d))
        pending = {}
        for lay, cts in d.parts.items():
            s = cts[0]
            for ct in cts[1:]:
                s = self.ev.add(s, ct)
            pending["nat" if lay == "R" else "T"] = s
        return CipherParam((d.shape[1],), self._next(), pending=pending)

    # ================================================================ Backend: elementwise
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
        common = [f for f in ("nat", "T") if f in a.forms and f in b.forms]
        form = common[0] if common else "nat"
        self._form(a, form)
        self._form(b, form)
        cost = 1 if op == "mul" else 0
        self._ensure([(a, a.forms, form, cost), (b, b.forms, form, cost)])
        fn = {"add": self.ev.add, "sub": self.ev.sub, "mul": self.ev.mul}[op]
        return CipherParam(a.shape, self._next(), forms={form: fn(a.forms[form], b.forms[form])})

    def _bias_broadcast(self, x, bias: CipherParam, sign: int, bias_first: bool):
        """x (b, m) +- bias (m,) (bias_first: bias - x)."""
        if len(bias.shape) != 1 or bias.shape[0] != x.shape[1]:
            raise ParameterError(f"cannot add a parameter of shape {bias.shape} to a batch tensor of "
                                 f"shape {x.shape}")
        ev = self.ev

        def combine(lay: str) -> list:
            bf = self._form(bias, "nat" if lay == "R" else "T")
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
        lay = self._target(x)
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
            lay = self._target(enc)
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
            lay = self._target(a, b)
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

    @_counted("add")
    def add(self, a, b):
        """a + b (a bias (m,) broadcasts over a batch (b, m)). 0 levels; different layouts stay a
        lazy sum."""
        return self._addsub(a, b, +1)

    @_counted("sub")
    def sub(self, a, b):
        """a - b. 0 levels."""
        return self._addsub(a, b, -1)

    @_counted("mul")
    def mul(self, a, b):
        """a * b elementwise (Hadamard). 1 level (ct x ct, or ct x plaintext data)."""
        ev = self.ev
        if isinstance(a, PlainBatch) and isinstance(b, PlainBatch):
            return PlainBatch(a.array * b.array)
        if isinstance(a, CipherParam) and isinstance(b, CipherParam):
            return self._param_binary(a, b, "mul")
        if isinstance(a, CipherParam) or isinstance(b, CipherParam):
            raise ParameterError("mul of a parameter with a batch tensor is not supported; use affine")
        if a.shape != b.shape:
            raise ParameterError(f"cannot multiply batch tensors of shapes {a.shape} and {b.shape}")
        lay = self._target(a, b)
        if isinstance(a, PlainBatch) or isinstance(b, PlainBatch):
            enc, pl = (b, a) if isinstance(a, PlainBatch) else (a, b)
            cts = self._cts(enc, lay)
            self._ensure(self._refs(enc, cts, 1))
            out = [ev.mul_plain(c, p) for c, p in zip(cts, self._plain(pl, lay), strict=True)]
        else:
            ca, cb = self._cts(a, lay), self._cts(b, lay)
            self._ensure(self._refs(a, ca, 1) + self._refs(b, cb, 1))
            out = [ev.mul(x, y) for x, y in zip(ca, cb, strict=True)]
        return CipherBatch(a.shape, self._next(), {lay: out})

    def _unary(self, a, fn, cost: int, linear: bool):
        """Apply ``fn`` (ciphertext -> ciphertext) to every ciphertext of a; linear maps act on each
        part of a lazy sum / pending gradient separately."""
        if isinstance(a, CipherParam):
            if linear and a.pending:
                self._ensure([(a, a.pending, f, cost) for f in a.pending])
                return CipherParam(a.shape, self._next(), pending={f: fn(ct) for f, ct in a.pending.items()})
            self._materialize(a)
            form = self._primary(a)
            self._ensure([(a, a.forms, form, cost)])
            return CipherParam(a.shape, self._next(), forms={form: fn(a.forms[form])})
        if linear and not a.deferred:
            parts = a.parts
        else:
            lay = self._target(a)
            parts = {lay: self._cts(a, lay)}
        self._ensure([r for cts in parts.values() for r in self._refs(a, cts, cost)])
        return CipherBatch(a.shape, self._next(), {lay: [fn(ct) for ct in cts] for lay, cts in parts.items()},
                           pref=a.pref if a.pref in parts else None)

    @_counted("neg")
    def neg(self, a):
        """-a. 0 levels."""
        if isinstance(a, PlainBatch):
            return PlainBatch(-a.array)
        return self._unary(a, self.ev.neg, 0, linear=True)

    @_counted("scale")
    def scale(self, a, c: float):
        """c * a for a public constant c. 1 level (0 for c = +-1)."""
        if isinstance(a, PlainBatch):
            return PlainBatch(float(c) * a.array)
        cost = 0 if float(c) in (1.0, -1.0) else 1
        return self._unary(a, lambda ct: self.ev.mul_const(ct, c), cost, linear=True)

    @_counted("add_const")
    def add_const(self, a, c: float):
        """a + c for a public constant c (parameters: only within their shape). 0 levels."""
        if isinstance(a, PlainBatch):
            return PlainBatch(a.array + float(c))
        if isinstance(a, CipherParam):
            self._materialize(a)
            form = self._primary(a)
            pt = self.ev.encode(float(c) * mask(self.plan, **_region(a.shape, form)))
            return CipherParam(a.shape, self._next(), forms={form: self.ev.add_plain(a.forms[form], pt)})
        if not a.deferred and len(a.parts) > 1:      # a lazy sum: add c to one part
            lay = a.pref if a.pref in a.parts else next(iter(a.parts))
            parts = dict(a.parts)
            parts[lay] = [self.ev.add_const(ct, c) for ct in parts[lay]]
            return CipherBatch(a.shape, self._next(), parts, pref=a.pref)
        return self._unary(a, lambda ct: self.ev.add_const(ct, c), 0, linear=False)

    # ================================================================ Backend: polynomials
    def poly_plan(self, p: ChebyshevPoly) -> tuple[PolyPlan, int]:
        """(evaluation plan, levels consumed) of a polynomial on this backend."""
        if p not in self._poly_plans:
            pp = plan_poly(p)
            cost = (power_levels(pp.coeffs) if pp.kind == "power"
                    else self.ev.chebyshev_levels(len(pp.coeffs) - 1, pp.a, pp.b))
            self._poly_plans[p] = (pp, cost)
        return self._poly_plans[p]

    def _eval_poly(self, pp: PolyPlan, ct, powers: dict):
        ev = self.ev
        if pp.kind == "chebyshev":
            return ev.chebyshev(ct, pp.coeffs, pp.a, pp.b)

        def power(m: int):
            if m not in powers:
                if m == 1:
                    powers[1] = ct
                else:
                    h = power(m // 2)
                    powers[m] = ev.mul(h, h)
            return powers[m]

        r = eval_power(ev, pp.coeffs, power)
        if isinstance(r, float):
            return ev.add_const(ev.sub(ct, ct), r)
        return r

    @_counted("poly")
    def poly(self, a, p: ChebyshevPoly):
        """p(a) elementwise (inputs must lie in p's interval). Levels: :meth:`poly_plan` (power
        basis: floor(log2 degree) + 1). Powers of a are cached and shared by the next polynomial of
        the same input (an activation and its derivative)."""
        if isinstance(a, PlainBatch):
            return PlainBatch(p(a.array))
        if not isinstance(p, ChebyshevPoly):
            raise ParameterError("the cipher backend evaluates only polynomial activations "
                                 "(ModelConfig.activation='poly')")
        pp, cost = self.poly_plan(p)
        if isinstance(a, CipherParam):
            return self._unary(a, lambda ct: self._eval_poly(pp, ct, {}), cost, linear=False)
        lay = self._target(a)
        cts = self._cts(a, lay)
        self._ensure(self._refs(a, cts, cost))
        powers = a.powers.setdefault(lay, [{} for _ in cts])
        return CipherBatch(a.shape, self._next(),
                           {lay: [self._eval_poly(pp, ct, powers[q]) for q, ct in enumerate(cts)]})

    # ================================================================ federated-layer helpers
    def encrypt_params(self, params: dict[str, np.ndarray]) -> dict[str, CipherParam]:
        """Encrypt a parameter dict (each in nat form, level 0)."""
        return {k: self.param(v) for k, v in params.items()}

    @_counted("encrypt")
    def encrypt_batch(self, x: np.ndarray, layout: str) -> CipherBatch:
        """Encrypt a batch (b, n) in layout R or C (ceil(b / c) ciphertexts, level 0)."""
        arr = np.asarray(x, dtype=np.float64)
        cts = [self.ev.encrypt(v) for v in encode_batch(self.plan, arr, layout)]
        return CipherBatch(arr.shape, self._next(), {layout: cts})

    def encrypt_inputs(self, xs: Sequence[np.ndarray]) -> list[CipherBatch]:
        """A querier's sequence X_1..X_T (each (b, d)) encrypted in the layouts the forward pass
        uses: C at odd timesteps (1-based), R at even ones (the layouts alternate with the hidden
        state), so X_t meets the weights with no conversion."""
        return [self.encrypt_batch(x, "C" if t % 2 == 0 else "R") for t, x in enumerate(xs)]

    def export_param(self, p: CipherParam) -> list:
        """The ciphertexts of a parameter in canonical nat form (one ciphertext), for aggregation,
        serialization and checkpoints (every party exports the same form)."""
        return [self._form(p, "nat")]

    def import_param(self, cts: Sequence, shape: tuple[int, ...]) -> CipherParam:
        """Inverse of :meth:`export_param`."""
        if len(cts) != 1:
            raise ParameterError(f"a parameter is one ciphertext, got {len(cts)}")
        return CipherParam(tuple(shape), self._next(), forms={"nat": cts[0]})

    def forms(self, p: CipherParam) -> dict:
        """Every materialized form of a parameter: form ("nat", "T", "diag") -> ciphertext."""
        self._materialize(p)
        return dict(p.forms)

    def add_forms(self, p: CipherParam, forms: Iterable[str]) -> None:
        """Materialize these forms of ``p`` now (cached on it, as a first use would): e.g. the
        transposes every data holder's training needs, computed once for all of them. Levels: 1 per
        form computed."""
        for form in forms:
            self._form(p, form)

    def import_forms(self, forms: dict, shape: tuple[int, ...]) -> CipherParam:
        """Inverse of :meth:`forms` (must contain "nat" or "T")."""
        if not forms or not ({"nat", "T"} & set(forms)):
            raise ParameterError(f"a parameter needs its nat or T form, got {sorted(forms)}")
        return CipherParam(tuple(shape), self._next(), forms=dict(forms))

    def ciphertexts(self, t: CipherTensor) -> list:
        """Ciphertexts to decrypt a tensor: a parameter's nat form, or a batch tensor's chunks in
        its (resolved) layout; :meth:`decode` reads the decrypted slot vectors back."""
        if isinstance(t, CipherParam):
            return self.export_param(t)
        return list(self._cts(t, self._export_layout(t)))

    def _export_layout(self, t: CipherBatch) -> str:
        if t.pref in t.full:
            return t.pref
        return next(iter(t.full)) if t.full else self._target(t)

    def decode(self, t: CipherTensor, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """numpy value of t from the decrypted slot vectors of :meth:`ciphertexts(t)`."""
        if isinstance(t, CipherParam):
            return self.decode_param(vectors[0], t.shape)
        return decode_batch(self.plan, list(vectors), self._export_layout(t), *t.shape)

    def decode_param(self, vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """numpy parameter of ``shape`` from the decrypted slot vector of its nat ciphertext."""
        return decode_param(self.plan, vector, tuple(shape), "nat")
