"""Encrypted tensors in and out of the cipher backend: what the federated layer sends, receives,
aggregates, checkpoints and decrypts.

What goes out:

* a parameter as ONE ciphertext in the canonical form nat (:func:`export_param`; every party exports
  the same form, so ciphertexts of different parties can be added), or as every form it holds
  (:func:`forms`: nat plus transposes or diagonals computed once for all data holders);
* a batch tensor (e.g. a prediction) as its chunk ciphertexts in one layout (:func:`ciphertexts`,
  :func:`export_layout`), read back after decryption by :func:`decode`.

**When an export spends levels.** The functions that read ciphertexts out (:func:`export_param`,
:func:`ciphertexts`, :func:`forms`) never compute, never spend a level and never call the refresh
hook: they raise ``ParameterError`` if the tensor is not *export-ready* (:func:`export_ready`). A
tensor is not ready when

* it is a parameter still pending (a gradient not yet summed over the batch): the batch reduction
  costs 1 level;
* it is a parameter held only in form T (e.g. a weight updated by a T-only gradient): the
  transposition to nat costs 1 level;
* it is a batch tensor held in no single layout (deferred until its first consumer, or a lazy sum
  of an R and a C part): resolving it runs the pending product (1 level from C, 2 from R) or the
  conversion of one part (1 level C->R, 2 R->C).

:func:`prepare_export` does that work, explicitly, and is the only function here that may spend
levels; when an operand is at the end of its levels it calls the backend's refresh hook first (a
collective round; with ``eager_margin`` also on other nearly spent live tensors), exactly as the
first use of the tensor in a computation would. :func:`add_forms` also spends levels (1 per form),
by request. Importing (:func:`import_param`, :func:`import_forms`, :func:`import_batch`) and
decoding cost nothing.

``CipherBackend.export_param``, ``.ciphertexts`` and ``.forms`` are the older entry points: they
prepare the tensor first (may spend levels and refresh) and then export; new code should call
:func:`prepare_export` where it accepts that cost and then the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from rhode.errors import ParameterError, SerializationError
from rhode.packing import CANONICAL_FORM, Form, Layout, PackingPlan, decode_batch, layout_of
from rhode.packing import decode_param as _decode_param
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam, CipherTensor, target_layout


class CipherBackend(Protocol):
    """What the codec needs of :class:`rhode.tensor.cipher.CipherBackend` (not imported here: the
    backend imports this module)."""

    plan: PackingPlan

    def _next(self) -> int: ...

    def _form(self, p: CipherParam, form: str): ...

    def _cts(self, t: CipherBatch, layout: str) -> list: ...


# ---------------------------------------------------------------- readiness and the level-spending step
def export_ready(t: CipherTensor) -> bool:
    """True if exporting ``t`` needs no computation: a parameter that is not pending and holds its
    nat form, or a batch tensor held whole in at least one layout."""
    if isinstance(t, CipherParam):
        return not t.pending and CANONICAL_FORM in t.forms
    return bool(t.full)


def prepare_export(backend: CipherBackend, tensors: Iterable[CipherTensor]) -> list[CipherTensor]:
    """Make every tensor export-ready, in order, and return those that needed work.

    THE call that spends levels for an export (see the module docstring for the costs): a pending
    parameter is summed over the batch (1 level), a parameter without a nat form is transposed
    (1 level), a deferred or mixed batch tensor is resolved into :func:`export_layout` (1-2 levels).
    Before each step whose operand has too few levels left it runs the backend's refresh hook (a
    collective round). The results are cached on the tensors (they are the forms/layouts any later
    use would compute), so preparing twice costs nothing the second time. Tensors already ready cost
    nothing. Per tensor the work and its refreshes are exactly those of the older
    ``CipherBackend.export_param`` / ``.ciphertexts``.
    """
    done = []
    for t in tensors:
        if export_ready(t):
            continue
        if isinstance(t, CipherParam):
            backend._form(t, CANONICAL_FORM)
        else:
            backend._cts(t, export_layout(t))
        done.append(t)
    return done


def _not_ready(t: CipherTensor) -> ParameterError:
    what = ("a pending parameter (a gradient not summed over the batch)" if isinstance(t, CipherParam)
            and t.pending else "a parameter without its nat form" if isinstance(t, CipherParam)
            else "a batch tensor held in no single layout")
    return ParameterError(f"cannot export {what} without spending levels; call prepare_export first")


# ---------------------------------------------------------------- export (no levels, no refresh)
def export_param(p: CipherParam) -> list:
    """The ciphertexts of a parameter in canonical nat form (one ciphertext), for aggregation,
    serialization and checkpoints. 0 levels, no refresh; ``ParameterError`` unless export-ready."""
    if not export_ready(p):
        raise _not_ready(p)
    return [p.forms[CANONICAL_FORM]]


def forms(p: CipherParam) -> dict:
    """Every materialized form of a parameter: form (nat, T, diag) -> ciphertext. 0 levels, no
    refresh; ``ParameterError`` if the parameter is pending (:func:`prepare_export` sums it)."""
    if p.pending:
        raise _not_ready(p)
    return dict(p.forms)


def export_layout(t: CipherBatch) -> Layout:
    """The layout a batch tensor is exported in: the one it was produced in if it holds it, else one
    it holds, else the layout :func:`prepare_export` would resolve it into. No computation."""
    if t.pref in t.full:
        return layout_of(t.pref)
    return layout_of(next(iter(t.full))) if t.full else target_layout(t)


def ciphertexts(t: CipherTensor) -> list:
    """Ciphertexts to decrypt a tensor: a parameter's nat form, or a batch tensor's chunks in
    :func:`export_layout`. 0 levels, no refresh; ``ParameterError`` unless export-ready."""
    if isinstance(t, CipherParam):
        return export_param(t)
    if not export_ready(t):
        raise _not_ready(t)
    return list(t.full[export_layout(t)])


def decode(plan: PackingPlan, t: CipherTensor, vectors: Sequence[np.ndarray]) -> np.ndarray:
    """numpy value of ``t`` from the decrypted slot vectors of :func:`ciphertexts` (t)."""
    if isinstance(t, CipherParam):
        return decode_param(plan, vectors[0], t.shape)
    return decode_batch(plan, list(vectors), export_layout(t), *t.shape)


def decode_param(plan: PackingPlan, vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """numpy parameter of ``shape`` from the decrypted slot vector of its nat ciphertext."""
    return _decode_param(plan, vector, tuple(shape), CANONICAL_FORM)


# ---------------------------------------------------------------- forms computed by request
def add_forms(backend: CipherBackend, p: CipherParam, forms: Iterable[str]) -> None:
    """Materialize these forms of ``p`` now (cached on it, as a first use would): e.g. the
    transposes every data holder's training needs, computed once for all of them. Levels: 1 per
    form computed (and 1 for the batch reduction of a pending parameter); may run refresh rounds."""
    for form in forms:
        backend._form(p, Form(form))


# ---------------------------------------------------------------- import (no levels)
def import_param(backend: CipherBackend, cts: Sequence, shape: tuple[int, ...]) -> CipherParam:
    """Inverse of :func:`export_param`: one ciphertext in nat form."""
    if len(cts) != 1:
        raise ParameterError(f"a parameter is one ciphertext, got {len(cts)}")
    return CipherParam(tuple(shape), backend._next(), forms={CANONICAL_FORM: cts[0]})


def import_forms(backend: CipherBackend, forms: dict, shape: tuple[int, ...]) -> CipherParam:
    """Inverse of :func:`forms` (must contain nat or T)."""
    if not forms or not ({Form.NAT, Form.T} & set(forms)):
        raise ParameterError(f"a parameter needs its nat or T form, got {sorted(forms)}")
    return CipherParam(tuple(shape), backend._next(), forms=dict(forms))


def import_batch(backend: CipherBackend, cts: Sequence, shape: tuple[int, int],
                 layout: str) -> CipherBatch:
    """An encrypted batch tensor (b, n) held in ``layout`` (R or C) from received ciphertexts, e.g. a
    querier's input X_t (:func:`rhode.packing.input_layout` says which layout it should be in).

    Raises:
        SerializationError: an unknown layout, a non-positive shape, or not ``ceil(b / chunk)``
            ciphertexts.
    """
    if layout not in (Layout.R, Layout.C):
        raise SerializationError(f"unknown layout {layout!r}")
    b, n = (int(s) for s in shape)
    if b < 1 or n < 1:
        raise SerializationError(f"a batch tensor needs a positive shape, got ({b}, {n})")
    want = backend.plan.n_chunks(b)
    if len(cts) != want:
        raise SerializationError(f"a ({b}, {n}) batch needs {want} ciphertexts, got {len(cts)}")
    return CipherBatch((b, n), backend._next(), {Layout(layout): list(cts)})
