"""The jobs a data holder runs on the encrypted global model: local training and the encrypted loss.

:func:`job_work` builds the work of a ``TRAIN`` request for :class:`~rhode.federated.job.JobRunner`;
the job's refresh hook is its pause. It runs in the data holder's process (in-process engines) or in
its node's worker process (Flower), with the same code.

With momentum the holder's velocity is its state between global iterations, but the holder does not
keep it: the aggregator sends it back with the next ``TRAIN`` request (blob VELOCITY, encrypted), so a
job never depends on where the holder ran last (a fresh ClientApp process, a worker) and a resumed run
continues from the checkpoint's velocities.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from rhode.errors import ProtocolError
from rhode.federated import codec as K
from rhode.federated.config import model_configs
from rhode.federated.dataprep import stats_from_json
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, JobKind, Status
from rhode.mhe import MheContext
from rhode.nn.model import RecurrentModel
from rhode.nn.train import BatchKey, StepHooks, batch_indices, train_locally
from rhode.tensor import codec as TC


def loss_indices(n: int, batch: int, *, seed: int, party: int, iteration: int) -> np.ndarray:
    """The windows data holder ``party``'s training loss is measured on after ``iteration``: its batch
    of the next iteration's first local step, so the loss rides on that step's forward pass (a
    ``TRAIN`` request with ``loss_scale``); after the last iteration a ``LOSS`` job computes it."""
    return batch_indices(n, batch, seed=seed, party=party, iteration=iteration + 1, step=0)


def job_work(state, p: Payload) -> Callable:
    """The work of a ``TRAIN`` request (see :mod:`rhode.federated.job`): local training or the loss
    on the encrypted global model in blob MODEL (and this holder's velocity in blob VELOCITY), with
    ``pause`` as the refresh hook."""
    run = state.run
    stats = stats_from_json(p.get(Field.GLOBAL_STATS.value, str))
    kind, it = JobKind(p.get(Field.KIND.value, str)), p.get(Field.ITERATION.value, int)
    X, Y = state.windows(stats)
    poly, _, train_cfg = model_configs(run, X.shape[2])
    model = RecurrentModel(poly)
    ctx = state.context()
    momentum = kind is JobKind.TRAIN and train_cfg.momentum > 0
    if momentum and it > 0 and Field.VELOCITY.value not in p.blobs:
        raise ProtocolError(f"global iteration {it + 1} with momentum, but the aggregator sent no velocity "
                            f"for data holder {state.index}")

    extras: dict = {}  # blobs the job's next answer carries (the loss, as soon as it is computed)

    def work(pause) -> Payload:
        backend = state.backend(model, pause)
        backend.reset_counters()
        params = K.take_model(ctx, backend, model, p, Field.MODEL.value)
        key = BatchKey(run.seed, state.index, it)
        blobs = {}
        if kind is JobKind.LOSS:
            sse = _sse(backend, model, params, (X, Y), run.batch, key, p.get(Field.SCALE.value, float))
            out, names = {"sse": sse}, ["sse"]
        else:
            velocity = (K.take_model(ctx, backend, model, p, Field.VELOCITY.value)
                        if momentum and Field.VELOCITY.value in p.blobs else None)
            on_loss = _loss_hook(ctx, backend, p, extras)
            out, velocity = train_locally(backend, model, params, (X, Y), train_cfg, key, velocity=velocity,
                                          hooks=StepHooks(on_loss=on_loss))
            names = list(model.param_shapes)
            if velocity is not None:
                K.prepare_velocity(backend, velocity)  # levels spent here, in the job; no rotation
                blobs[Field.VELOCITY.value] = K.velocity_blob(ctx, model, velocity)
        backend.prepare_export([out[k] for k in names])  # levels (and refreshes) spent here, in the job
        cts = [TC.export_param(out[k])[0] for k in names]
        used = {k: sorted(v.forms) for k, v in params.items()}
        blobs.update(extras)
        extras.clear()
        return Payload(
            {
                Field.STATUS.value: Status.DONE.value,
                Field.JOB.value: p.get(Field.JOB.value, str),
                Field.WINDOWS.value: int(X.shape[0]),
                Field.FORMS_USED.value: json.dumps(used),
                Field.OPERATIONS.value: json.dumps(backend.counters()["total"]),
            },
            {Field.MODEL.value: K.cts_blob(ctx, cts), **blobs},
        )

    work.extras = extras
    return work


def _loss_hook(ctx: MheContext, backend, p: Payload, extras: dict):
    """With ``loss_scale`` in the request: the callback that turns the first local step's forward pass
    into the loss of the model it started from (``scale`` times the encrypted sum of squared errors,
    a (o,) tensor; levels: two products after the forward pass), put in ``extras`` (blob LOSS) for the
    job's next answer. None without."""
    scale = p.get(Field.LOSS_SCALE.value, float) if Field.LOSS_SCALE.value in p.config else 0.0
    if scale <= 0:
        return None

    def on_loss(yhat, y) -> None:
        sse = _scaled_sse(backend, yhat, y, scale)
        backend.prepare_export([sse])
        extras[Field.LOSS.value] = K.cts_blob(ctx, [TC.export_param(sse)[0]])

    return on_loss


def pending_answer(ctx: MheContext, job_id: str, extras: dict | None = None) -> Callable[[list], Payload]:
    """The answer of a job paused for a refresh of ``cts`` (with the blobs the job put in ``extras``
    since its last answer)."""

    def pending(cts: list) -> Payload:
        blobs = {Field.CTS.value: K.cts_blob(ctx, cts)}
        if extras:
            blobs.update(extras)
            extras.clear()
        return Payload(
            {Field.STATUS.value: Status.PENDING.value, Field.JOB.value: job_id, Field.COUNT.value: len(cts)},
            blobs,
        )

    return pending


def _sse(backend, model, params, windows, batch: int, key: BatchKey, scale: float):
    """``scale`` times the encrypted sum of squared errors on this holder's loss batch of ``windows``
    (X (n, T, d), Y (n, o)): a (o,) tensor. Levels: the forward pass, then two products."""
    X, Y = windows
    idx = loss_indices(X.shape[0], batch, seed=key.seed, party=key.party, iteration=key.iteration)
    be = backend
    yhat = model.predict(be, params, [be.data(X[idx, t, :]) for t in range(X.shape[1])])
    return _scaled_sse(be, yhat, be.data(Y[idx]), scale)


def _scaled_sse(be, yhat, y, scale: float):
    """``scale`` times the sum over the batch of (yhat - y)^2, yhat and y (b, o) tensors: a (o,) tensor.
    Levels: two products (the scale rides on the plaintext of the first)."""
    err = be.sub(yhat, y)
    return be.batch_sum(be.mul(err, be.mul(err, be.data(np.full(y.shape, scale)))))
