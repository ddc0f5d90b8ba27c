"""Federated averaging, and the plaintext federated trainer (the mirror of the encrypted run and the
non-secure baseline: the one plaintext trainer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rhode.errors import ParameterError
from rhode.nn.config import TrainConfig
from rhode.nn.diagnostics import RangeRecorder
from rhode.nn.loss import mse, mse_loss
from rhode.nn.model import RecurrentModel
from rhode.nn.train import BatchKey, StepHooks, check_windows, train_locally
from rhode.tensor.base import Backend, Tensor
from rhode.tensor.numpy_backend import NumpyBackend


def _normalized_weights(n: int, weights: Sequence[float] | None) -> list[float] | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ParameterError(
            f"FedAvg weights must be {n} non-negative numbers with a positive sum, got {list(weights)}")
    if np.all(w == w[0]):
        return None
    return list(w / w.sum())


def fedavg(backend: Backend, param_sets: Sequence[dict[str, Tensor]],
           weights: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Average N local models. Uniform (weights None or all equal): sum, then one scalar product by
    1/N (none for N = 1). Weighted: each model scaled by w_i / sum(w) (one scalar product each), then
    summed. Levels on ciphertexts: 1."""
    n = len(param_sets)
    if n == 0:
        raise ParameterError("fedavg needs at least one local model")
    keys = list(param_sets[0])
    if any(list(p) != keys for p in param_sets):
        raise ParameterError("local models have different parameter names; all parties must train the "
                             "same model")
    w = _normalized_weights(n, weights)
    out: dict[str, Tensor] = {}
    for k in keys:
        if w is None:
            total = param_sets[0][k]
            for p in param_sets[1:]:
                total = backend.add(total, p[k])
            out[k] = total if n == 1 else backend.scale(total, 1.0 / n)
        else:
            total = None
            for wi, p in zip(w, param_sets, strict=True):
                term = backend.scale(p[k], wi)
                total = term if total is None else backend.add(total, term)
            out[k] = total
    return out


@dataclass
class FedResult:
    """Outcome of :func:`train_federated`.

    params: the final global model (name -> float64 array).
    models: the global model after each iteration (element 0: the initial model).
    history: one dict per global iteration: iteration, train_loss (1/(2n) sum of squared errors over
        all parties' windows, global model after the iteration), train_mse, and, measured during the
        iteration's local training, max_abs_tanh_input, max_abs_sigmoid_input, max_abs_grad, and
        in_range (every polynomial input inside its interval; always True for exact activations and
        clip="none" as far as the clip is concerned).
    velocities: every party's velocity after the last iteration (party order; empty with momentum 0).
    """

    params: dict[str, np.ndarray]
    models: list[dict[str, np.ndarray]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    velocities: list[dict[str, np.ndarray]] = field(default_factory=list)


def evaluate(model: RecurrentModel, params: dict[str, np.ndarray], X: np.ndarray,
             Y: np.ndarray) -> dict[str, float]:
    """Plaintext loss and MSE of ``params`` on windows X (n, T, d), Y (n, output_size)."""
    X, Y = check_windows(model, X, Y)
    be = NumpyBackend()
    yhat = model.predict(be, {k: be.param(v) for k, v in params.items()},
                         [be.data(X[:, t, :]) for t in range(X.shape[1])])
    return {"train_loss": mse_loss(yhat, Y), "train_mse": mse(yhat, Y)}


def train_federated(model: RecurrentModel, train: TrainConfig,
                    parties: Sequence[tuple[np.ndarray, np.ndarray]], *, global_iterations: int,
                    seed: int, weights: Sequence[float] | None = None,
                    on_iteration: Callable[[int, dict], None] | None = None,
                    participants: Callable[[int], Sequence[int]] | None = None) -> FedResult:
    """Plaintext FedAvg exactly as the encrypted run executes it (N = 1: centralized training): the
    mirror of an encrypted run with the polynomial model, the non-secure baseline with the exact one.

    parties: per data holder (X (n_i, T, d), Y (n_i, output_size)). Global iteration k = 0..G-1: every
    party starts from the global model, runs ``train_locally`` (m steps, batches from
    ``batch_indices(seed, party=i, iteration=k, step)``, the learning rate of iteration k, and with
    momentum its own velocity carried from its previous iteration: the velocity is per party and is
    never averaged), then :func:`fedavg` (``weights``, e.g. the sample counts, or None for uniform).
    Initial model: ``model.init_params(seed)``; initial velocities zero.
    ``on_iteration(k, record)`` is called after each global iteration with its history record.
    ``participants(k)``: the parties that train in iteration k (default all): the mirror of a run in
    which the others dropped out (their models and velocities left out, the weights renormalized).
    """
    train.validate()
    if isinstance(global_iterations, bool) or not isinstance(global_iterations, int) or global_iterations < 1:
        raise ParameterError(f"the number of global iterations (--iterations) must be a positive integer, "
                             f"got {global_iterations!r}")
    if len(parties) == 0:
        raise ParameterError("federated training needs at least one data holder, got none")
    data = [check_windows(model, X, Y) for X, Y in parties]
    params = {k: np.array(v, dtype=float) for k, v in model.init_params(seed).items()}
    result = FedResult(params, [params])
    velocities: list = [None] * len(data)
    for k in range(global_iterations):
        with np.errstate(all="ignore"):  # a diverging run overflows: its record says so, not a warning
            who = list(range(len(data))) if participants is None else sorted(participants(k))
            params, velocities, rec = _iteration(model, train, data, (params, velocities),
                                                 BatchKey(seed, 0, k), weights, who)
        result.models.append(params)
        result.history.append(rec)
        if on_iteration is not None:
            on_iteration(k, rec)
    result.params = params
    result.velocities = [v for v in velocities if v is not None]
    return result


def _iteration(model: RecurrentModel, train: TrainConfig, data: list, state: tuple[dict, list],
               key: BatchKey, weights, who: list[int]) -> tuple[dict, list, dict]:
    """One plaintext global iteration on a range-recording backend from ``state`` = (global model,
    every party's velocity or None): (new global model, new velocities, its record)."""
    params, velocities = state
    be = RangeRecorder({model.tanh.f: "tanh", model.sigmoid.f: "sigmoid"})
    max_grad = [0.0]

    def record_grads(grads: dict) -> None:
        max_grad[0] = max(max_grad[0], max(float(np.max(np.abs(g))) for g in grads.values()))

    runs = {i: train_locally(be, model, {n: be.param(v) for n, v in params.items()}, data[i], train,
                             key._replace(party=i), velocity=velocities[i],
                             hooks=StepHooks(on_grads=record_grads))
            for i in who}
    velocities = [None if i not in runs or runs[i].velocity is None else
                  {n: np.asarray(v, dtype=float) for n, v in runs[i].velocity.items()}
                  for i in range(len(data))]
    w = None if weights is None else [weights[i] for i in who]
    params = {n: np.asarray(v, dtype=float) for n, v in fedavg(be, [runs[i].params for i in who], w).items()}
    X_all = np.concatenate([X for X, _ in data])
    Y_all = np.concatenate([Y for _, Y in data])
    rec = {"iteration": key.iteration, **evaluate(model, params, X_all, Y_all), "max_abs_grad": max_grad[0],
           "max_abs_tanh_input": be.max_abs["tanh"], "max_abs_sigmoid_input": be.max_abs["sigmoid"]}
    rec["in_range"] = _in_range(model, train, rec)
    return params, velocities, rec


def _in_range(model: RecurrentModel, train: TrainConfig, rec: dict) -> bool:
    cfg = model.config
    ok = train.clip == "none" or rec["max_abs_grad"] <= train.clip_bound
    if cfg.activation == "poly":
        ok = ok and rec["max_abs_tanh_input"] <= cfg.tanh_interval
        if cfg.cell != "rnn":
            ok = ok and rec["max_abs_sigmoid_input"] <= cfg.sigmoid_interval
    return bool(ok)
