"""The plaintext references of a run: the mirror (same polynomials) and exact training.

Both train with the encrypted run's seed, batches, FedAvg weights and loss batches, so the encrypted
global model must equal the mirror's within CKKS precision after every iteration; exact training
(exact activations) is the non-secure baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhode.federated.config import RunConfig
from rhode.federated.work import loss_indices
from rhode.nn.config import TrainConfig
from rhode.nn.fedavg import train_federated
from rhode.nn.model import RecurrentModel
from rhode.tensor import NumpyBackend


def plain_fedavg(
    model: RecurrentModel, train_cfg: TrainConfig, parties, cfg: RunConfig, weights, participants=None
) -> list[dict]:
    """Plaintext FedAvg with the encrypted run's seed, batches and weights; ``parties[i] = (X_i, Y_i)``;
    ``participants(k)``: who trains in iteration k (a run with dropouts). Returns the global model after
    each iteration (element 0: the initial model)."""
    return train_federated(
        model, train_cfg, parties, global_iterations=cfg.global_iterations, seed=cfg.seed, weights=weights,
        participants=participants,
    ).models


def plain_loss(
    model: RecurrentModel, params: dict, parties: Sequence, cfg: RunConfig, iteration: int
) -> float:
    """The training loss the encrypted run measures after ``iteration``: 1/(2n) sum (yhat - y)^2 over
    every holder's loss batch (:func:`rhode.federated.work.loss_indices`: its batch of the next
    iteration's first local step)."""
    be = NumpyBackend()
    total, count = 0.0, 0
    for i, (X, Y) in enumerate(parties):
        ix = loss_indices(X.shape[0], cfg.batch, seed=cfg.seed, party=i, iteration=iteration)
        yhat = model.predict(be, params, [X[ix, t, :] for t in range(X.shape[1])])
        total += float(np.sum((yhat - Y[ix]) ** 2))
        count += len(ix)
    return total / (2 * count)


def predict_plain(model: RecurrentModel, params: dict, X: np.ndarray) -> np.ndarray:
    """Plaintext predictions (n, output_size) for windows X (n, T, d)."""
    be = NumpyBackend()
    return np.asarray(model.predict(be, params, [X[:, t, :] for t in range(X.shape[1])]))
