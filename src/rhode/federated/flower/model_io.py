"""The encrypted model and a querier's encrypted inputs as bytes, and the cipher backend they live on.

A model travels as one framed ciphertext list (:func:`rhode.mhe.serial.ciphertexts_to_bytes`): one
ciphertext per parameter, in the model's parameter order, each in the canonical form of
:meth:`CipherBackend.export_param`. Checkpoints use the in-process engine's layout (parameter name ->
``[framed ciphertext list]``), so both engines read each other's checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rhode.errors import CheckpointError, SerializationError
from rhode.federated.engine import plan_for
from rhode.mhe import MheContext
from rhode.mhe import serial as S
from rhode.mhe.evaluator import Evaluator
from rhode.nn.model import RecurrentModel
from rhode.tensor.cipher import CipherBackend
from rhode.tensor.cipher_tensor import CipherBatch

LAYOUTS = ("R", "C")


def backend_for(ctx: MheContext, model: RecurrentModel, batch: int, refresh: Callable[[list], list],
                refresh_margin: int = 2) -> CipherBackend:
    """The cipher backend of the in-process engine for ``model`` and mini-batches of ``batch``, with
    ``refresh`` as its refresh hook. ``refresh_margin`` is its ``eager_margin``: when a refresh round
    is due anyway, live ciphertexts with at most this many levels left join it. A deployment, where
    every refresh costs two network rounds, takes a larger margin than in-process (2): fewer rounds,
    more ciphertexts per round; the values differ only by refresh noise (~1e-6)."""
    return CipherBackend(Evaluator(ctx), plan_for(model, batch, ctx.params), refresh=refresh,
                         eager_margin=refresh_margin)


def rotations_for(model: RecurrentModel, batch: int, ctx_params) -> list[int]:
    """The rotation offsets the packing needs (exactly the joint rotation keys to generate)."""
    return sorted(int(r) for r in plan_for(model, batch, ctx_params).rotation_indices())


def model_to_bytes(ctx: MheContext, backend: CipherBackend, model: RecurrentModel, params: dict) -> bytes:
    """One framed ciphertext list: a ciphertext per parameter, in ``model.param_shapes`` order."""
    cts = []
    for name in model.param_shapes:
        part = backend.export_param(params[name])
        if len(part) != 1:
            raise SerializationError(f"parameter {name} exports {len(part)} ciphertexts, expected 1")
        cts.extend(part)
    return S.ciphertexts_to_bytes(ctx, cts)


def model_from_bytes(ctx: MheContext, backend: CipherBackend, model: RecurrentModel, data: bytes) -> dict:
    """Inverse of :func:`model_to_bytes` (checks the number of ciphertexts, levels and key)."""
    shapes = model.param_shapes
    cts = S.ciphertexts_from_bytes(ctx, data, count=len(shapes))
    return {name: backend.import_param([ct], shape) for (name, shape), ct in zip(shapes.items(), cts)}


def model_to_checkpoint(ctx: MheContext, backend: CipherBackend, model: RecurrentModel,
                        params: dict) -> dict[str, list[bytes]]:
    """The in-process engine's checkpoint layout: name -> [framed ciphertext list]."""
    return {k: [S.ciphertexts_to_bytes(ctx, backend.export_param(params[k]))] for k in model.param_shapes}


def model_from_checkpoint(ctx: MheContext, backend: CipherBackend, model: RecurrentModel,
                          blobs: dict[str, list[bytes]]) -> dict:
    """Inverse of :func:`model_to_checkpoint`, checking parameter names."""
    shapes = model.param_shapes
    if list(blobs) != list(shapes):
        raise CheckpointError(f"checkpoint holds parameters {list(blobs)}, the model has {list(shapes)}")
    return {k: backend.import_param(S.ciphertexts_from_bytes(ctx, v[0], count=1), shapes[k])
            for k, v in blobs.items()}


def batch_from_ciphertexts(backend: CipherBackend, cts: Sequence, shape: tuple[int, int],
                           layout: str) -> CipherBatch:
    """An encrypted batch tensor (b, n) held in ``layout`` (R or C), e.g. a querier's input X_t.

    Needs: ``ceil(b / chunk)`` ciphertexts."""
    if layout not in LAYOUTS:
        raise SerializationError(f"unknown layout {layout!r}")
    b, n = (int(s) for s in shape)
    want = backend.plan.n_chunks(b)
    if len(cts) != want or b < 1 or n < 1:
        raise SerializationError(f"a ({b}, {n}) batch needs {want} ciphertexts, got {len(cts)}")
    return CipherBatch((b, n), backend._next(), {layout: list(cts)})


def export_layout(backend: CipherBackend, t: CipherBatch) -> str:
    """The layout :meth:`CipherBackend.ciphertexts` exports a batch tensor in (for the querier's decode)."""
    return backend._export_layout(t)
