"""Encrypted models, batches and ciphertext lists as message blobs, and the cipher backend they live on.

A model travels as one bundle: the framed ciphertexts of every *form* of every parameter (its
canonical ``nat`` form, and the transposes or bias diagonals the aggregator computed once for all data
holders) and the names of those forms. Checkpoints hold only the canonical form
(parameter name -> ``[framed ciphertext list]``), the same for every engine.

A data holder's momentum *velocity* travels in the same bundle with exactly one form per parameter,
the one it holds (nat, or T for a weight whose gradient comes out in T): it is only ever added to
gradients of its own form, so it never needs a transposition (rotations). Checkpoints hold every
holder's velocity as ``velocity/<party>/<param>`` -> ``[framed ciphertext list, form name]``.

Levels: encoding a blob never spends a level nor runs a refresh (it happens at the transport, outside
any job): it exports with :mod:`rhode.tensor.codec`, which refuses a tensor that is not export-ready.
Whoever hands a tensor over makes it ready first with ``backend.prepare_export`` (the data holder's
job for its local model, where a refresh is a protocol pause; the aggregator for what it sends).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

from rhode.errors import CheckpointError, ProtocolError, SerializationError
from rhode.federated.payload import Blob, Payload, pack_bundle, unpack_bundle
from rhode.mhe import MheContext
from rhode.mhe import serial as S
from rhode.mhe.evaluator import Evaluator
from rhode.mhe.protocols.base import payload_size
from rhode.nn.model import RecurrentModel
from rhode.packing import plan as make_plan
from rhode.tensor import codec as TC
from rhode.tensor.cipher import CipherBackend


def plan_for(model: RecurrentModel, batch: int, params):
    """The packing plan for ``model`` trained with mini-batches of ``batch`` samples."""
    cfg = model.config
    return make_plan(max(cfg.input_size, cfg.hidden_size, cfg.output_size), batch, params.slots)


def rotations_for(model: RecurrentModel, batch: int, params) -> list[int]:
    """The rotation offsets the packing needs (exactly the joint rotation keys to generate)."""
    return sorted(int(r) for r in plan_for(model, batch, params).rotation_indices())


def backend_for(
    ctx: MheContext,
    model: RecurrentModel,
    batch: int,
    refresh: Callable[[list], list],
    margin: int | None = None,
) -> CipherBackend:
    """A cipher backend for ``model`` and mini-batches of ``batch`` with ``refresh`` as its refresh hook;
    ``margin`` is its ``eager_margin`` (None: a refresh round takes only the ciphertexts that need it)."""
    return CipherBackend(
        Evaluator(ctx), plan_for(model, batch, ctx.params), refresh=refresh, eager_margin=margin
    )


# -- ciphertext lists ------------------------------------------------------------------------------------
def cts_blob(ctx: MheContext, cts: Sequence, kind: S.Kind = S.Kind.CIPHERTEXTS) -> Blob:
    """A list of ciphertexts (or shares of ``kind``) as a blob."""
    cts = list(cts)
    return Blob(cts, lambda: S.ciphertexts_to_bytes(ctx, cts, kind), lambda: payload_size(cts, kind.name))


def share_blob(ctx: MheContext, share) -> Blob:
    """A protocol share (:mod:`rhode.mhe.protocols`): it knows its byte form and its size."""
    return Blob(share, lambda: share.to_bytes(ctx), share.payload_size)


def take_cts(
    ctx: MheContext,
    p: Payload,
    name: str,
    kind: S.Kind = S.Kind.CIPHERTEXTS,
    count: int | None = None,
    key_tag: str | None = None,
) -> list:
    """The ciphertext list of blob ``name`` (checked: count, kind, key tag)."""
    cts = p.take(name, lambda b: S.ciphertexts_from_bytes(ctx, b, kind, count=count, key_tag=key_tag))
    if count is not None and len(cts) != count:
        raise SerializationError(f"expected {count} ciphertexts in '{name}', got {len(cts)}")
    return list(cts)


# -- models --------------------------------------------------------------------------------------------------
def model_blob(
    ctx: MheContext, backend: CipherBackend, model: RecurrentModel, params: dict, forms: bool = False
) -> Blob:
    """The encrypted model ``params`` as a blob: in process the tensors themselves (the data holders
    share the forms computed on them), on the wire every materialized form (``forms``) or only the
    canonical one. Encoded at most once (a request sent to every holder shares the bytes)."""
    if forms:
        return _forms_blob(ctx, model, params, lambda n: TC.forms(params[n]))
    return _forms_blob(ctx, model, params, lambda n: {"nat": _one(n, params[n])})


def velocity_blob(ctx: MheContext, model: RecurrentModel, velocity: dict) -> Blob:
    """A data holder's velocity (parameter name -> tensor, not pending: :func:`prepare_velocity`) as a
    blob, one ciphertext per parameter in the form it holds; read it with :func:`take_model`."""
    return _forms_blob(ctx, model, velocity, lambda n: _own_form(n, velocity[n]))


def prepare_velocity(backend: CipherBackend, velocity: dict) -> None:
    """Make a velocity export-ready in its own form: a parameter still pending is summed over the batch
    (1 level, may pause for a refresh); nothing is transposed (0 rotations beyond that sum)."""
    for v in velocity.values():
        backend.forms(v)


def _own_form(name: str, p) -> dict:
    have = TC.forms(p)
    form = "nat" if "nat" in have else "T"
    if form not in have:
        raise SerializationError(f"velocity {name} holds neither its nat nor its T form")
    return {form: have[form]}


def _forms_blob(ctx: MheContext, model: RecurrentModel, params: dict, pick: Callable[[str], dict]) -> Blob:
    names = list(model.param_shapes)

    @functools.cache
    def encode() -> bytes:
        cts, layout = [], []
        for name in names:
            have = pick(name)
            layout.append(list(have))
            cts.extend(have.values())
        return pack_bundle(Payload({"forms": json.dumps(layout)}, {"cts": S.ciphertexts_to_bytes(ctx, cts)}))

    def size() -> int:
        return sum(payload_size(list(pick(n).values())) for n in names)

    return Blob(params, encode, size)


def _one(name: str, p):
    part = TC.export_param(p)
    if len(part) != 1:
        raise SerializationError(f"parameter {name} exports {len(part)} ciphertexts, expected 1")
    return part[0]


def take_model(ctx: MheContext, backend: CipherBackend, model: RecurrentModel, p: Payload, name: str) -> dict:
    """The encrypted model of blob ``name`` (inverse of :func:`model_blob`; checks names, counts,
    levels and the joint key tag)."""
    return p.take(name, lambda b: _model_from_bytes(ctx, backend, model, b))


def _model_from_bytes(ctx: MheContext, backend: CipherBackend, model: RecurrentModel, data: bytes) -> dict:
    bundle = unpack_bundle(data, "encrypted model")
    shapes = model.param_shapes
    try:
        layout = json.loads(bundle.get("forms", str))
        ok = len(layout) == len(shapes) and all(
            isinstance(f, list) and f and all(isinstance(x, str) for x in f) for f in layout
        )
    except ValueError:
        ok = False
    if not ok:
        raise ProtocolError(f"the encrypted model must name the forms of its {len(shapes)} parameters")
    cts = iter(S.ciphertexts_from_bytes(ctx, bundle.blob("cts"), count=sum(len(f) for f in layout)))
    return {
        name: backend.import_forms({f: next(cts) for f in forms}, shape)
        for (name, shape), forms in zip(shapes.items(), layout, strict=True)
    }


VELOCITY_PREFIX = "velocity/"


def model_to_checkpoint(
    ctx: MheContext,
    backend: CipherBackend,
    model: RecurrentModel,
    params: dict,
    velocities: dict[int, dict] | None = None,
) -> dict[str, list[bytes]]:
    """The checkpoint layout: name -> [framed ciphertext list of its canonical form], then (momentum)
    every holder's velocity as ``velocity/<party>/<name>`` -> [framed ciphertext list, form]; the
    velocities stay encrypted and in their own form (export-ready: the aggregator refreshed them)."""
    out = {k: [S.ciphertexts_to_bytes(ctx, TC.export_param(params[k]))] for k in model.param_shapes}
    for party, vel in sorted((velocities or {}).items()):
        for k in model.param_shapes:
            ((form, ct),) = _own_form(k, vel[k]).items()
            out[f"{VELOCITY_PREFIX}{party}/{k}"] = [S.ciphertexts_to_bytes(ctx, [ct]), form.encode()]
    return out


def model_from_checkpoint(
    ctx: MheContext, backend: CipherBackend, model: RecurrentModel, blobs: dict[str, list[bytes]]
) -> dict:
    """Inverse of :func:`model_to_checkpoint` for the global model, checking parameter names (the
    velocities: :func:`velocities_from_checkpoint`)."""
    shapes = model.param_shapes
    blobs = {k: v for k, v in blobs.items() if not k.startswith(VELOCITY_PREFIX)}
    if list(blobs) != list(shapes):
        raise CheckpointError(f"checkpoint holds parameters {list(blobs)}, the model has {list(shapes)}")
    return {
        k: backend.import_param(S.ciphertexts_from_bytes(ctx, v[0], count=1), shapes[k])
        for k, v in blobs.items()
    }


def velocities_from_checkpoint(
    ctx: MheContext, backend: CipherBackend, model: RecurrentModel, blobs: dict[str, list[bytes]]
) -> dict[int, dict]:
    """Every holder's encrypted velocity stored by :func:`model_to_checkpoint` (party -> name ->
    tensor; empty without momentum), checking names, forms and counts."""
    shapes = model.param_shapes
    out: dict[int, dict] = {}
    for key, value in blobs.items():
        if not key.startswith(VELOCITY_PREFIX):
            continue
        party, _, name = key[len(VELOCITY_PREFIX):].partition("/")
        if not party.isdigit() or name not in shapes or len(value) != 2 or value[1] not in (b"nat", b"T"):
            raise CheckpointError(f"checkpoint entry {key!r} is not a velocity of this model")
        ct = S.ciphertexts_from_bytes(ctx, value[0], count=1)[0]
        out.setdefault(int(party), {})[name] = backend.import_forms({value[1].decode(): ct}, shapes[name])
    for party, vel in out.items():
        if list(vel) != list(shapes):
            raise CheckpointError(f"checkpoint holds velocity {list(vel)} of data holder {party}, the "
                                  f"model has {list(shapes)}")
    return dict(sorted(out.items()))
