"""The cipher backend: :class:`rhode.tensor.base.Backend` on packed CKKS ciphertexts.

Batch tensors are packed in the R/C layouts and parameters in the nat/T forms of
:mod:`rhode.packing` (see docs/packing.md). Output layouts alternate so that successive products need
no transposition: a product with its input in C gives R (1 level), with its input in R gives C
(2 levels) (the rules: :mod:`rhode.packing.policy`). Where an elementwise operation meets two
layouts, sums stay lazy (a tensor may hold an R part and a C part) and a conversion is made only when
a product or polynomial needs one layout; it is cached on the tensor. Plaintext data operands are
encoded in whatever layout the encrypted ones have. Weight gradients stay unreduced over the batch
until they are used (one batch reduction per weight per step, however many timesteps contributed).

Module map: this class dispatches the Backend operations (the products are implemented in
:mod:`rhode.tensor.cipher_products`, the single-ciphertext kernels in
:mod:`rhode.tensor.cipher_kernels`, polynomials in :mod:`rhode.tensor.cipher_poly`); level
management and refresh batching live in :mod:`rhode.tensor.levels`, counters in
:mod:`rhode.tensor.counters`, export/import for the federated layer in :mod:`rhode.tensor.codec`.

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
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from rhode.errors import ParameterError
from rhode.mhe.evaluator import Evaluator
from rhode.packing import (
    CANONICAL_FORM,
    Form,
    Layout,
    PackingPlan,
    contract_levels,
    encode_batch,
    encode_param,
    input_layout,
    mask,
)
from rhode.packing import valid_region as _region
from rhode.tensor import codec
from rhode.tensor.cipher_elementwise import ElementwiseOps
from rhode.tensor.cipher_kernels import Kernels
from rhode.tensor.cipher_poly import PolyPlan, eval_power, plan_poly, power_levels
from rhode.tensor.cipher_products import ProductOps
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, CipherTensor, PlainBatch, target_layout
from rhode.tensor.counters import RUN_COUNTERS, OpCounters
from rhode.tensor.levels import LevelManager, needs
from rhode.tensor.poly import ChebyshevPoly

__all__ = ["RUN_COUNTERS", "CipherBackend"]


def _counted(name: str):
    """Charge the operation's counts to ``name``; a new encrypted result joins the eager candidates."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            with self._scope(name):
                out = fn(self, *args, **kwargs)
            if isinstance(out, CipherTensor):
                self.levels.track(out)
            return out
        return wrapper
    return deco


class CipherBackend(ProductOps, ElementwiseOps):
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
        self._seq = itertools.count()
        self._counts = OpCounters(evaluator)
        self.levels = LevelManager(evaluator, refresh, self._counts, eager_margin)
        self._poly_plans: dict[ChebyshevPoly, tuple[PolyPlan, int]] = {}

    def __repr__(self) -> str:
        return f"CipherBackend(H={self.plan.H}, chunk={self.plan.c}, slots={self.plan.slots})"

    # ================================================================ counters
    def _scope(self, name: str):
        return self._counts.scope(name)

    def counters(self) -> dict:
        """Operation counts since the last reset (see :meth:`rhode.tensor.counters.OpCounters.counters`):
        ``{"total": {...}, "by_op": {op: {...}}}``."""
        return self._counts.counters()

    def reset_counters(self) -> None:
        """Zero all counters (the evaluator's included)."""
        self._counts.reset()

    def prepare(self, param_shapes: Iterable[tuple[int, ...]] | dict) -> None:
        """Encode the plaintext masks a model with these parameter shapes needs (one-time work that
        the first training step would otherwise do)."""
        shapes = param_shapes.values() if isinstance(param_shapes, dict) else param_shapes
        with self._scope("prepare"):
            self.kernels.prepare([tuple(s) for s in shapes])

    # ================================================================ levels and refresh
    @property
    def eager_margin(self) -> int | None:
        """See the class docstring (:class:`rhode.tensor.levels.LevelManager`)."""
        return self.levels.eager_margin

    @eager_margin.setter
    def eager_margin(self, value: int | None) -> None:
        self.levels.eager_margin = value

    def refresh(self, tensors: Iterable[CipherTensor]) -> None:
        """Refresh every ciphertext the tensors hold to level 0 now, in one round (e.g. the
        parameters after an update, so that the next step starts at level 0)."""
        self.levels.refresh_now(tensors)

    def level(self, t: CipherTensor) -> int:
        """Highest level among the ciphertexts the tensor holds (0 = fresh)."""
        return self.levels.level(t)

    # ================================================================ layouts and forms
    def _next(self) -> int:
        """Creation order of a new tensor (newer operands set the layout)."""
        return next(self._seq)

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
                        self.levels.ensure(needs(t, part, contract_levels(lay)))
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

    def _materialize(self, p: CipherParam) -> None:
        """Sum a pending parameter over the samples of a chunk (1 level), in place."""
        if not p.pending:
            return
        with self._scope("batch_reduce"):
            self.levels.ensure(needs(p, p.pending, 1))
            form, ct = self.kernels.reduce_batch(p.pending, p.shape)
        p.forms = {form: ct}
        p.pending = {}

    def _form(self, p: CipherParam, form: str):
        """The ciphertext of ``p`` in ``form`` (materializing, transposing or masking; cached)."""
        self._materialize(p)
        if form not in p.forms:
            src = self._primary(p)
            with self._scope("bias_diag" if form == Form.DIAG else "transpose"):
                self.levels.ensure(needs(p, p.forms, 1, [src]))
                p.forms[form] = self.kernels.form(p.forms[src], p.shape, src, form)
        return p.forms[form]

    @staticmethod
    def _primary(p: CipherParam) -> Form:
        return Form.NAT if Form.NAT in p.forms else Form.T

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
        return CipherParam(w.shape, self._next(),
                           forms={CANONICAL_FORM: self.ev.encrypt(encode_param(self.plan, w))})

    # ================================================================ Backend: products
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
        return self._outer(x, d)

    @_counted("batch_sum")
    def batch_sum(self, d) -> CipherParam:
        """Sum over the batch: (b, m) -> (m,), unreduced over the samples of a chunk until used
        (the reduction costs 1 level then). 0 levels here."""
        return self._batch_sum(d)

    # ================================================================ Backend: elementwise
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
        lay = target_layout(a, b)
        if isinstance(a, PlainBatch) or isinstance(b, PlainBatch):
            enc, pl = (b, a) if isinstance(a, PlainBatch) else (a, b)
            cts = self._cts(enc, lay)
            self.levels.ensure(needs(enc, cts, 1))
            out = [ev.mul_plain(c, p) for c, p in zip(cts, self._plain(pl, lay), strict=True)]
        else:
            ca, cb = self._cts(a, lay), self._cts(b, lay)
            self.levels.ensure(needs(a, ca, 1) + needs(b, cb, 1))
            out = [ev.mul(x, y) for x, y in zip(ca, cb, strict=True)]
        return CipherBatch(a.shape, self._next(), {lay: out})

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
        lay = target_layout(a)
        cts = self._cts(a, lay)
        self.levels.ensure(needs(a, cts, cost))
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
        return CipherBatch(arr.shape, self._next(), {Layout(layout): cts})

    def encrypt_inputs(self, xs: Sequence[np.ndarray]) -> list[CipherBatch]:
        """A querier's sequence X_1..X_T (each (b, d)) encrypted in the layouts the forward pass
        uses (:func:`rhode.packing.input_layout`: C at odd timesteps (1-based), R at even ones), so
        X_t meets the weights with no conversion."""
        return [self.encrypt_batch(x, input_layout(t)) for t, x in enumerate(xs)]

    # ---- export / import: rhode.tensor.codec (these methods delegate to it)
    def prepare_export(self, tensors: Iterable[CipherTensor]) -> list[CipherTensor]:
        """:func:`rhode.tensor.codec.prepare_export`: make the tensors export-ready. The export step
        that may spend levels and run refresh rounds; returns the tensors that needed work."""
        return codec.prepare_export(self, tensors)

    def export_param(self, p: CipherParam) -> list:
        """The ciphertexts of a parameter in canonical nat form (one ciphertext), for aggregation,
        serialization and checkpoints (every party exports the same form).

        Spends levels if ``p`` is not export-ready: ``prepare_export([p])`` then
        :func:`rhode.tensor.codec.export_param` (a pending parameter: 1 level for the batch
        reduction; a T-only one: 1 level for the transposition; either may first run a refresh
        round). Call :meth:`prepare_export` first to make that cost explicit."""
        codec.prepare_export(self, [p])
        return codec.export_param(p)

    def import_param(self, cts: Sequence, shape: tuple[int, ...]) -> CipherParam:
        """Inverse of :meth:`export_param` (:func:`rhode.tensor.codec.import_param`)."""
        return codec.import_param(self, cts, shape)

    def forms(self, p: CipherParam) -> dict:
        """Every materialized form of a parameter: form ("nat", "T", "diag") -> ciphertext. A pending
        parameter is summed over the batch first (1 level, may run a refresh round)."""
        self._materialize(p)
        return codec.forms(p)

    def add_forms(self, p: CipherParam, forms: Iterable[str]) -> None:
        """Materialize these forms of ``p`` now (:func:`rhode.tensor.codec.add_forms`). Levels: 1 per
        form computed."""
        codec.add_forms(self, p, forms)

    def import_forms(self, forms: dict, shape: tuple[int, ...]) -> CipherParam:
        """Inverse of :meth:`forms` (must contain "nat" or "T")."""
        return codec.import_forms(self, forms, shape)

    def import_batch(self, cts: Sequence, shape: tuple[int, int], layout: str) -> CipherBatch:
        """A batch tensor from received ciphertexts (:func:`rhode.tensor.codec.import_batch`)."""
        return codec.import_batch(self, cts, shape, layout)

    def ciphertexts(self, t: CipherTensor) -> list:
        """Ciphertexts to decrypt a tensor: a parameter's nat form, or a batch tensor's chunks in
        :meth:`export_layout`; :meth:`decode` reads the decrypted slot vectors back. Spends levels
        if ``t`` is not export-ready (``prepare_export([t])`` then
        :func:`rhode.tensor.codec.ciphertexts`)."""
        codec.prepare_export(self, [t])
        return codec.ciphertexts(t)

    def export_layout(self, t: CipherBatch) -> Layout:
        """The layout :meth:`ciphertexts` exports a batch tensor in (no computation;
        :func:`rhode.tensor.codec.export_layout`)."""
        return codec.export_layout(t)

    _export_layout = export_layout     # the former private name

    def decode(self, t: CipherTensor, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """numpy value of t from the decrypted slot vectors of :meth:`ciphertexts(t)`."""
        return codec.decode(self.plan, t, vectors)

    def decode_param(self, vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """numpy parameter of ``shape`` from the decrypted slot vector of its nat ciphertext."""
        return codec.decode_param(self.plan, vector, shape)
