"""Each data holder's data for a run: load, split, window; global normalization statistics.

The normalization needs global statistics that no party reveals on its own: each data holder
encrypts its pre-scaled column sums under the collective key, the aggregator adds the ciphertexts
and only the total is threshold-decrypted (:meth:`rhode.federated.aggregator.Aggregator.keygen`).
Two secure sums: the mean, then the variance from squares centred on the revealed mean (no
cancellation, so the flooding noise of the decryption costs little precision). The pre-scaling keeps
every slot in [-1, 1] (CKKS precision): column j is multiplied by 2^-e_j, where e_j is the largest
of the parties' published magnitude exponents ceil(log2 max|x_j|) (a coarse power-of-two bound),
and everything is divided by the public total row count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rhode.data import (
    Normalizer,
    Stats,
    TimeSeries,
    Windows,
    check_compatible,
    difference,
    forecast_windows,
    level_of,
    load_bundled,
    load_csv,
    make_windows,
    min_rows,
    partition,
    train_test_split,
    window_rows,
)
from rhode.errors import DataError, ProtocolError, SerializationError
from rhode.federated.config import RunConfig, resolve_batch
from rhode.federated.limits import check_magnitudes
from rhode.packing import plan as packing_plan


@dataclass
class HolderData:
    """One data holder's plaintext: its train and test series (differenced when the run differences)
    and, after normalization, its windows."""

    index: int
    train: TimeSeries
    test: TimeSeries
    X: np.ndarray | None = None        # (n, T, d) normalized training windows
    Y: np.ndarray | None = None        # (n, 1)
    test_windows: Windows | None = None  # the test windows with the target's levels


def rows_needed(cfg: RunConfig) -> int:
    """Rows one contiguous stretch needs for one window: T + h, and h more when differencing (the
    first h rows of every stretch have no difference)."""
    return min_rows(cfg.timesteps, cfg.horizon) + (cfg.horizon if cfg.difference else 0)


def load_holders(cfg: RunConfig) -> list[HolderData]:
    """Load each data holder's series (CSV per holder, or a bundled dataset partitioned) and split
    each one in time order into train and test parts (:func:`split_holder`)."""
    need = rows_needed(cfg)
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
    holders = [HolderData(i, *split_holder(s, cfg, i)) for i, s in enumerate(series)]
    # every holder's pre-scaled statistics must be encodable at the preset's scale (before any key)
    sources = list(cfg.data) or [h.train.source for h in holders]
    values = [stat_values(h.train) for h in holders]
    check_magnitudes(sources, values, holders[0].train.stat_columns, cfg.preset)
    return holders


def split_holder(series: TimeSeries, cfg: RunConfig, index: int) -> tuple[TimeSeries, TimeSeries]:
    """One data holder's (train, test) parts: split in time order, then each part differenced on its
    own when ``cfg.difference`` (so no difference spans the split). DataError if a part is too short
    for a window."""
    need = rows_needed(cfg)
    if series.n_rows * cfg.test_fraction < need or series.n_rows * (1 - cfg.test_fraction) < need:
        enough = math.ceil(need / min(cfg.test_fraction, 1 - cfg.test_fraction))
        extra = " with differencing" if cfg.difference else ""
        raise DataError(
            f"data holder {index} ({series.source}) has {series.n_rows} rows: too few for windows of "
            f"{cfg.timesteps} timesteps + horizon {cfg.horizon}{extra} in both the train and the test "
            f"part (test fraction {cfg.test_fraction}); need at least {enough} rows, or lower --timesteps")
    train, test = train_test_split(series, cfg.test_fraction)
    if cfg.difference:
        return difference(train, cfg.horizon), difference(test, cfg.horizon)
    return train, test


def with_batch(cfg: RunConfig, holders: Sequence[HolderData], slots: int) -> RunConfig:
    """``cfg`` with its batch resolved (0 = auto: :func:`rhode.federated.config.resolve_batch` from
    the holders' feature count, their fewest training windows and the ring's ``slots``)."""
    if cfg.batch:
        return cfg
    fewest = min(len(window_rows(h.train, cfg.timesteps, cfg.horizon)[1]) for h in holders)
    return dataclasses.replace(cfg, batch=resolve_batch(cfg, holders[0].train.n_features, fewest, slots))


def check_holders(cfg: RunConfig, holders: Sequence[HolderData], slots: int) -> None:
    """What can be checked before any key is made (so that nothing is written for a run that cannot
    go through): the model packs into the ring's ``slots`` with the (resolved) batch, and every data
    holder has a batch of training windows and a test window. ParameterError or DataError."""
    packing_plan(max(holders[0].train.n_features, cfg.hidden, 1), cfg.batch, slots)
    for h in holders:
        n = len(window_rows(h.train, cfg.timesteps, cfg.horizon)[1])
        if n < cfg.batch:
            raise DataError(
                f"data holder {h.index} ({h.train.source}) has {n} training windows, fewer than the batch "
                f"of {cfg.batch}; lower --batch (0: auto), lower --timesteps or give it more rows")
        window_rows(h.test, cfg.timesteps, cfg.horizon)  # DataError if its test part has no window


def data_digest(cfg: RunConfig, h: HolderData) -> tuple[str, str]:
    """(what, sha256) of data holder ``h``'s data: the bytes of its CSV file, or (bundled dataset)
    its partition's values; kept with the holder so that a resume can refuse changed data."""
    if cfg.data:
        path = cfg.data[h.index]
        try:
            with open(path, "rb") as fh:
                return str(path), hashlib.sha256(fh.read()).hexdigest()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    sha = hashlib.sha256()
    for part in (h.train, h.test):
        sha.update(json.dumps([part.feature_names, part.target_name, part.segment_starts]).encode())
        sha.update(part.values.tobytes())
        sha.update(part.target.tobytes())
    return h.train.source, sha.hexdigest()


def query_series(path, stats: Stats, cfg: RunConfig) -> TimeSeries:
    """A querier's CSV as the run's holders saw their data: the same target and features, differenced
    when the run differences; DataError if its columns differ from the global statistics'."""
    level = cfg.target or (level_of(stats.target, cfg.horizon) if cfg.difference else stats.target)
    series = load_csv(path, level, cfg.features)
    if cfg.difference:
        series = difference(series, cfg.horizon)
    if tuple(series.stat_columns) != tuple(stats.columns):
        raise DataError(f"{path} gives columns {list(series.stat_columns)}; the model was trained on "
                        f"{list(stats.columns)}")
    return series


def stat_values(series: TimeSeries) -> np.ndarray:
    """(n, c) values of ``series.stat_columns`` (features, then the target if it is not a feature)."""
    if series.target_is_feature:
        return series.values
    return np.column_stack([series.values, series.target])


def magnitude_exponents(values: np.ndarray) -> np.ndarray:
    """ceil(log2 max|x_j|) per column: the coarse power-of-two bound a party publishes."""
    peak = np.max(np.abs(values), axis=0)
    return np.ceil(np.log2(np.maximum(peak, 1e-12))).astype(int)


def stats_vector(values: np.ndarray, exps: list[int], total_rows: float) -> np.ndarray:
    """What a holder encrypts for one secure sum of the global statistics: its column sums of
    ``values`` pre-scaled by the public powers of two 2^-e, divided by the public total row count
    (every entry in [-1, 1])."""
    scale = np.exp2(-np.asarray(exps, dtype=float))
    if scale.shape != (values.shape[1],):
        raise ProtocolError(f"expected {values.shape[1]} column exponents, got {scale.size}")
    return (values * scale).sum(axis=0) / total_rows


def unscale(values: np.ndarray, exps: list[int], what: str) -> np.ndarray:
    """Undo the public pre-scaling of a decrypted statistics sum; a value beyond its public bound
    means the threshold decryption failed (shares that do not match the joint key)."""
    bound = np.exp2(np.asarray(exps, dtype=float))
    out = values * bound
    if not np.all(np.isfinite(out)) or np.any(np.abs(out) > 1.01 * bound + 1e-9):
        raise ProtocolError(f"the threshold decryption of the global {what} is wrong (outside the "
                            "public bounds): the data holders' secret shares do not match the joint key")
    return out


def stats_to_json(s: Stats) -> str:
    """The revealed global statistics as JSON (run.json, messages)."""
    return json.dumps({"columns": list(s.columns), "target": s.target, "count": s.count,
                       "sum": list(map(float, s.sum)), "sumsq": list(map(float, s.sumsq))})


def stats_from_json(text: str) -> Stats:
    """Inverse of :func:`stats_to_json` (SerializationError if malformed)."""
    try:
        d = json.loads(text)
        return Stats(tuple(d["columns"]), str(d["target"]), float(d["count"]),
                     np.asarray(d["sum"], dtype=float), np.asarray(d["sumsq"], dtype=float))
    except (ValueError, KeyError, TypeError):
        raise SerializationError("global statistics are malformed") from None


def window_holders(holders: Sequence[HolderData], norm: Normalizer, cfg: RunConfig) -> None:
    """Normalize and window every holder's train and test parts (in place)."""
    for h in holders:
        h.X, h.Y = make_windows(norm.normalize(h.train), cfg.timesteps, cfg.horizon)
        h.test_windows = forecast_windows(h.test, norm, cfg.timesteps, cfg.horizon)


def querier_windows(holders: Sequence[HolderData], limit: int) -> Windows:
    """The held-out test windows a querier asks about: the first ``limit`` of all holders' test
    windows, taken evenly from every holder."""
    per = max(1, math.ceil(limit / len(holders)))
    return Windows.concatenate([h.test_windows.head(per) for h in holders]).head(limit)


__all__ = ["HolderData", "check_holders", "data_digest", "load_holders", "magnitude_exponents",
           "query_series", "querier_windows", "rows_needed", "split_holder", "stat_values", "stats_from_json",
           "stats_to_json", "stats_vector", "unscale", "window_holders", "with_batch"]
