"""Local training of one data holder: m mini-batch steps of forward, BPTT, clipping and update.

The mini-batches are a pure function of (seed, party, iteration, step), so the plaintext mirror and the
encrypted run draw exactly the same windows. With momentum, the holder's velocity is carried across
its local steps and, by the caller (:func:`train_locally` returns it), across global iterations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rhode.errors import DataError, ParameterError
from rhode.nn.config import TrainConfig
from rhode.nn.model import RecurrentModel
from rhode.nn.optim import update
from rhode.tensor.base import Backend, Tensor

# how the arguments of batch_indices are named in messages, and the CLI option where there is one
_LABELS = {"seed": ("seed", " (--seed)"), "batch_size": ("batch size", " (--batch)"),
           "n_samples": ("window count", "")}


def _nonneg(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        label, flag = _LABELS.get(name, (name, ""))
        raise ParameterError(f"{label} must be a non-negative integer{flag}, got {value!r}")
    return int(value)


class BatchKey(NamedTuple):
    """What fixes one data holder's mini-batches in one global iteration (with the step number)."""

    seed: int
    party: int
    iteration: int


def batch_indices(n_samples: int, batch_size: int, *, seed: int, party: int, iteration: int,
                  step: int) -> np.ndarray:
    """Indices (batch_size,) of the windows of mini-batch ``step`` of global ``iteration`` for
    ``party``: drawn without replacement, sorted, deterministic in (seed, party, iteration, step)."""
    key = [_nonneg(k, v) for k, v in
           (("seed", seed), ("party", party), ("iteration", iteration), ("step", step))]
    n, b = _nonneg("n_samples", n_samples), _nonneg("batch_size", batch_size)
    if b == 0:
        raise ParameterError("the batch size (--batch) must be at least 1")
    if n < b:
        raise DataError(
            f"party {party} has {n} windows, fewer than the batch size (--batch) {b}; lower --batch, "
            "shorten the window (--timesteps) or give this party more rows")
    rng = np.random.default_rng(np.random.SeedSequence(key))
    return np.sort(rng.choice(n, size=b, replace=False))


def check_windows(model: RecurrentModel, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one data holder's windows: X (n, T, d) and Y (n, output_size) (or (n,) if
    output_size == 1); return them as float64 arrays. Raises :class:`DataError`."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    cfg = model.config
    if X.ndim != 3 or X.shape[2] != cfg.input_size or X.shape[1] < 1:
        raise DataError(f"windows X must have shape (n, T, {cfg.input_size}), got {X.shape}")
    if Y.ndim == 1 and cfg.output_size == 1:
        Y = Y[:, None]
    if Y.shape != (X.shape[0], cfg.output_size):
        raise DataError(f"targets Y must have shape ({X.shape[0]}, {cfg.output_size}), got {Y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise DataError("windows or targets contain NaN or infinite values; clean or impute the data")
    return X, Y


class LocalResult(NamedTuple):
    """What a holder's local training leaves: its local model and its velocity (None: momentum 0)."""

    params: dict[str, Tensor]
    velocity: dict[str, Tensor] | None


@dataclass(frozen=True)
class StepHooks:
    """What a caller of :func:`train_locally` sees: ``on_grads(grads)`` each step's gradients
    (diagnostics), ``on_loss(yhat, y)`` the first step's forward pass (the loss of the model it starts
    from, on that step's batch)."""

    on_grads: Callable[[dict[str, Tensor]], None] | None = None
    on_loss: Callable[[Tensor, Tensor], None] | None = None


def train_locally(backend: Backend, model: RecurrentModel, params: dict[str, Tensor],
                  windows: tuple[np.ndarray, np.ndarray], train: TrainConfig, key: BatchKey, *,
                  velocity: dict[str, Tensor] | None = None, hooks: StepHooks | None = None) -> LocalResult:
    """Run ``train.local_steps`` mini-batch steps of global iteration ``key.iteration`` on one holder's
    plaintext windows (X (n, T, d), Y (n, output_size)).

    ``params``: backend tensors (e.g. the encrypted global model). Step s uses
    ``batch_indices(n, b, *key, s)``; each timestep's batch enters as ``backend.data(X[idx, t, :])``
    (b, d). The update is :func:`rhode.nn.optim.update` with the learning rate of ``key.iteration``;
    ``velocity`` (parameter-shaped tensors, or None = zero) is this holder's velocity from its previous
    global iteration. ``hooks`` (:class:`StepHooks`) see each step's gradients and the first step's
    forward pass.
    Returns (local model, velocity after the last step; None with momentum 0).
    """
    train.validate()
    X, Y = check_windows(model, *windows)
    b = train.batch_size
    for step in range(train.local_steps):
        idx = batch_indices(X.shape[0], b, seed=key.seed, party=key.party, iteration=key.iteration, step=step)
        xs: Sequence[Tensor] = [backend.data(X[idx, t, :]) for t in range(X.shape[1])]
        y = backend.data(Y[idx])
        yhat, cache = model.forward(backend, params, xs)
        if hooks is not None and hooks.on_loss is not None and step == 0:
            hooks.on_loss(yhat, y)
        grads = model.backward(backend, params, cache, yhat, y, b)
        if hooks is not None and hooks.on_grads is not None:
            hooks.on_grads(grads)
        params, velocity = update(backend, params, grads, velocity, train, key.iteration)
    return LocalResult(params, velocity)


def local_training(backend: Backend, model: RecurrentModel, params: dict[str, Tensor], X: np.ndarray,
                   Y: np.ndarray, train: TrainConfig, key: BatchKey,
                   on_grads: Callable[[dict[str, Tensor]], None] | None = None) -> dict[str, Tensor]:
    """:func:`train_locally` from a zero velocity, returning only the local model (X (n, T, d), Y (n,
    output_size)). A caller that runs several global iterations with momentum carries the velocity
    with :func:`train_locally` instead."""
    hooks = StepHooks(on_grads=on_grads)
    return train_locally(backend, model, params, (X, Y), train, key, hooks=hooks).params
