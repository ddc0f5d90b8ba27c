"""Losses on plaintext predictions (numpy)."""

from __future__ import annotations

import numpy as np


def mse_loss(yhat: np.ndarray, y: np.ndarray) -> float:
    """L = 1/(2b) ||yhat - y||_F^2, the loss whose gradient RecurrentModel.backward computes."""
    yhat, y = np.asarray(yhat, dtype=float), np.asarray(y, dtype=float)
    return float(0.5 * np.sum((yhat - y) ** 2) / yhat.shape[0])


def mse(yhat: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over all entries."""
    return float(np.mean((np.asarray(yhat, dtype=float) - np.asarray(y, dtype=float)) ** 2))
