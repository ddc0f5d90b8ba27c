"""Cutting a series into (T timesteps x d features) windows and time-ordered train/test splits."""

from __future__ import annotations

import math

import numpy as np

from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError


def min_rows(timesteps: int, horizon: int = 1) -> int:
    """Rows one contiguous stretch needs to give a single window: T inputs, then the target h later."""
    return timesteps + horizon


def make_windows(series: TimeSeries, timesteps: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All windows of a series, in time order.

    Window i holds rows t..t+T-1 of ``values``; its target is ``target[t+T-1+horizon]`` (the target
    ``horizon`` steps after the window's last step). Windows never cross a segment boundary (see
    :attr:`TimeSeries.segment_starts`); a segment shorter than T + horizon rows gives none.

    Returns:
        X (n, T, d) float64 and Y (n, 1) float64, n = sum over segments of (rows - T - horizon + 1).
    """
    idx, target_rows = window_rows(series, timesteps, horizon)
    return series.values[idx], series.target[target_rows][:, None]


def window_rows(series: TimeSeries, timesteps: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The row indices behind :func:`make_windows`: (n, T) input rows of each window and (n,) the row
    of its target (DataError if the series gives no window)."""
    if timesteps < 1 or horizon < 1:
        raise DataError(f"timesteps ({timesteps}) and horizon ({horizon}) must both be at least 1")
    rows, targets = [], []
    for a, b in series.segments():
        n = b - a - timesteps - horizon + 1
        if n <= 0:
            continue
        rows.append(a + np.arange(n)[:, None] + np.arange(timesteps)[None, :])
        targets.append(a + np.arange(n) + timesteps - 1 + horizon)
    if not rows:
        longest = max((b - a for a, b in series.segments()), default=0)
        raise DataError(f"{series.source}: too few rows for one window: the longest contiguous stretch has "
                        f"{longest} rows but {timesteps} timesteps + horizon {horizon} need "
                        f"{min_rows(timesteps, horizon)}; lower the timesteps or give more rows")
    return np.concatenate(rows), np.concatenate(targets)


def train_test_split(series: TimeSeries, test_fraction: float = 0.2) -> tuple[TimeSeries, TimeSeries]:
    """Time-ordered split of one data holder's series: the last ``ceil(test_fraction * n)`` rows are
    the test set, the rest the training set (no shuffling, so no future values leak into training).
    Segment structure is kept on both sides."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    n = series.n_rows
    n_test = math.ceil(test_fraction * n)
    if n_test >= n:
        raise DataError(f"{series.source}: {n} rows are too few to keep a training set with "
                        f"test_fraction {test_fraction}")
    cut = n - n_test
    return series.rows(0, cut, f"{series.source}[train]"), series.rows(cut, n, f"{series.source}[test]")
