"""Test data shared by the nn tests: random batches and a noisy sine series."""

from __future__ import annotations

import numpy as np


def noisy_sine_windows(n: int = 600, T: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows X (n, T, 1) and next-value targets Y (n, 1) of a noisy sine in about [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + T)
    s = 0.9 * np.sin(0.1 * t) + 0.05 * rng.standard_normal(n + T)
    X = np.stack([s[i:i + T] for i in range(n)])[:, :, None]
    return X, s[T:T + n][:, None]


def random_batch(b: int, T: int, d: int, out: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """T inputs (b, d) uniform in [-1, 1] and targets (b, out)."""
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-1, 1, size=(b, d)) for _ in range(T)]
    return xs, rng.uniform(-1, 1, size=(b, out))
