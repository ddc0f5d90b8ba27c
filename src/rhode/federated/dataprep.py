"""Each data holder's data for a run: load, split, window; global normalization statistics.

The normalization needs global statistics that no party reveals on its own: each data holder
encrypts its (pre-scaled) count, sums and sums of squares under the collective key, the aggregator
adds the ciphertexts and only the total is threshold-decrypted (:func:`encrypted_global_stats`).
The pre-scaling keeps every slot in [-1, 1] (CKKS precision): column j is multiplied by
2^-e_j, where e_j is the largest of the parties' published magnitude exponents ceil(log2 max|x_j|)
(a coarse power-of-two bound, documented in docs/security.md), and everything is divided by the
public total row count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rhode.data import (
    Normalizer,
    Stats,
    TimeSeries,
    check_compatible,
    load_bundled,
    load_csv,
    local_stats,
    make_windows,
    min_rows,
    partition,
    train_test_split,
)
from rhode.errors import DataError
from rhode.federated.config import RunConfig


@dataclass
class HolderData:
    """One data holder's plaintext: its train and test series and (after normalization) windows."""

    index: int
    train: TimeSeries
    test: TimeSeries
    X: np.ndarray | None = None        # (n, T, d) normalized training windows
    Y: np.ndarray | None = None        # (n, 1)
    X_test: np.ndarray | None = None   # (n_test, T, d) normalized test windows
    Y_test: np.ndarray | None = None


def load_holders(cfg: RunConfig) -> list[HolderData]:
    """Load each data holder's series (CSV per holder, or a bundled dataset partitioned) and split
    each one in time order into train and test parts."""
    need = min_rows(cfg.timesteps, cfg.horizon)
    if cfg.data:
        if cfg.target is None:
            raise DataError("--target is required with --data: name the column to forecast")
        series = [load_csv(p, cfg.target, cfg.features) for p in cfg.data]
        check_compatible(series)
    else:
        whole = load_bundled(cfg.dataset)
        if cfg.target is not None and cfg.target != whole.target_name:
            raise DataError(f"bundled dataset '{cfg.dataset}' forecasts '{whole.target_name}', "
                            f"not '{cfg.target}'; drop --target or use --data")
        if cfg.max_rows is not None:
            whole = whole.rows(max(0, whole.n_rows - cfg.max_rows), whole.n_rows)
        series = partition(whole, cfg.parties, cfg.partition, cfg.seed,
                           min_rows=math.ceil(need / cfg.test_fraction))
    holders = []
    enough = math.ceil(need / min(cfg.test_fraction, 1 - cfg.test_fraction))
    for i, s in enumerate(series):
        if s.n_rows * cfg.test_fraction < need or s.n_rows * (1 - cfg.test_fraction) < need:
            raise DataError(
                f"data holder {i} ({s.source}) has {s.n_rows} rows: too few for windows of "
                f"{cfg.timesteps} timesteps + horizon {cfg.horizon} in both the train and the test part "
                f"(test fraction {cfg.test_fraction}); need at least {enough} rows, "
                "or lower --timesteps")
        train, test = train_test_split(s, cfg.test_fraction)
        holders.append(HolderData(i, train, test))
    return holders


def magnitude_exponents(stats: Stats) -> np.ndarray:
    """ceil(log2 max|x_j|) per column, from sqrt(sumsq) >= max|x| as a bound that needs no max.
    This coarse power of two is what a party publishes."""
    bound = np.sqrt(np.maximum(stats.sumsq, 1e-300))
    return np.ceil(np.log2(np.maximum(bound, 1e-12))).astype(int)


def encrypted_global_stats(stats: Sequence[Stats],
                           secure_sum: Callable[[list[np.ndarray]], np.ndarray]) -> Stats:
    """Global statistics from the parties' local ones through ``secure_sum``.

    ``secure_sum(vectors)`` receives one plaintext vector per party (values in [-1, 1]); it must
    encrypt each under the collective key, add the ciphertexts and threshold-decrypt only the sum.
    Public inputs: the row counts and the magnitude exponents.
    """
    first = stats[0]
    total_rows = float(sum(s.count for s in stats))
    exps = np.max([magnitude_exponents(s) for s in stats], axis=0)
    col_scale = np.exp2(-exps.astype(float))
    vectors = []
    for s in stats:
        v = np.concatenate([[s.count], s.sum * col_scale, s.sumsq * col_scale ** 2]) / total_rows
        vectors.append(v)
    total = np.asarray(secure_sum(vectors), dtype=np.float64)[: 1 + 2 * len(first.columns)] * total_rows
    c = len(first.columns)
    return Stats(first.columns, first.target, float(round(total[0])), total[1:1 + c] / col_scale,
                 total[1 + c:] / col_scale ** 2)


def window_holders(holders: Sequence[HolderData], norm: Normalizer, cfg: RunConfig) -> None:
    """Normalize and window every holder's train and test parts (in place)."""
    for h in holders:
        h.X, h.Y = make_windows(norm.normalize(h.train), cfg.timesteps, cfg.horizon)
        h.X_test, h.Y_test = make_windows(norm.normalize(h.test), cfg.timesteps, cfg.horizon)


def querier_windows(holders: Sequence[HolderData], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test windows a querier asks about: the first ``limit`` of all holders' test
    windows, taken evenly from every holder."""
    per = max(1, math.ceil(limit / len(holders)))
    X = np.concatenate([h.X_test[:per] for h in holders])[:limit]
    Y = np.concatenate([h.Y_test[:per] for h in holders])[:limit]
    return X, Y


__all__ = ["HolderData", "encrypted_global_stats", "load_holders", "local_stats", "querier_windows",
           "window_holders"]
