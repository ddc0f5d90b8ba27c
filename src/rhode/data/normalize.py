"""Normalization from *global* statistics that the data holders can add up under encryption.

:class:`Stats` (count, sum and sum of squares per column) are additive: the global statistics are the
sum of every data holder's. In a run they are computed under encryption, so that no party reveals its
own mean or variance (two secure sums: the mean, then the squares centred on it;
:mod:`rhode.federated.dataprep` and :mod:`rhode.federated.keygen`); :func:`local_stats` is the
plaintext version (tests, experiments). :meth:`Normalizer.from_stats` turns the total into a
mean/std scaling.

Why mean/std and not min/max: a minimum or maximum is not a sum, so it cannot be aggregated by
ciphertext additions; it needs an encrypted comparison (a high-degree polynomial sign
approximation, deep and imprecise in CKKS). Mean and variance need only additions. Standardized values
are then divided by ``factor`` (default 3) so that values within 3 standard deviations of the mean land
in [-1, 1], and inputs are clipped to [-1, 1] at the data holder, because the encrypted network's
polynomial activations are accurate only on bounded intervals.

Precision of the encrypted sums: every holder pre-scales its column sums by public powers of two and
the public row count so that every slot stays in [-1, 1] (raw squares of large values, e.g. trading
volumes of 1e7 over thousands of rows, ~1e17, would exceed what CKKS represents accurately).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError


@dataclass(frozen=True)
class Stats:
    """Additive per-column statistics of one or more data holders.

    Attributes:
        columns: the column names (:attr:`TimeSeries.stat_columns`: features, then the target if it
            is not a feature).
        target: the name of the target column (one of ``columns``).
        count: number of rows.
        sum: (c,) sum of each column.
        sumsq: (c,) sum of squares of each column.
    """

    columns: tuple[str, ...]
    target: str
    count: float
    sum: np.ndarray
    sumsq: np.ndarray

    def __add__(self, other: Stats) -> Stats:
        if not isinstance(other, Stats):
            return NotImplemented
        if other.columns != self.columns or other.target != self.target:
            raise DataError(f"cannot add statistics over columns {list(self.columns)} (target "
                            f"'{self.target}') and {list(other.columns)} (target '{other.target}'); every "
                            "party must use the same feature and target columns")
        return Stats(self.columns, self.target, self.count + other.count, self.sum + other.sum,
                     self.sumsq + other.sumsq)

    def __radd__(self, other: object) -> Stats:
        if other == 0:  # lets sum(stats_list) work
            return self
        return NotImplemented


def local_stats(series: TimeSeries) -> Stats:
    """Count, sum and sum of squares of each of ``series.stat_columns`` over this party's rows."""
    cols = series.values if series.target_is_feature else np.column_stack([series.values, series.target])
    return Stats(series.stat_columns, series.target_name, float(series.n_rows), cols.sum(axis=0),
                 np.square(cols).sum(axis=0))


@dataclass(frozen=True)
class Normalizer:
    """x -> clip((x - mean) / (factor * std), -1, 1) for inputs; the target is scaled the same way
    but not clipped (it enters only the loss, not an activation)."""

    columns: tuple[str, ...]
    target: str
    mean: np.ndarray
    std: np.ndarray
    factor: float = 3.0

    @classmethod
    def from_stats(cls, total: Stats, factor: float = 3.0) -> Normalizer:
        """Mean and (population) standard deviation from summed statistics. A constant column gets
        std 1 (it is only shifted to 0)."""
        if total.count < 2:
            raise DataError(f"normalization needs at least 2 rows in total, got {total.count:g}")
        if factor <= 0:
            raise DataError(f"normalization factor must be positive, got {factor}")
        mean = total.sum / total.count
        var = np.maximum(total.sumsq / total.count - mean**2, 0.0)
        std = np.sqrt(var)
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        return cls(total.columns, total.target, mean, std, float(factor))

    @classmethod
    def from_series(cls, series_list: Sequence[TimeSeries], factor: float = 3.0) -> Normalizer:
        """Plaintext shortcut (experiments, tests): :meth:`from_stats` of the summed :func:`local_stats`."""
        if not series_list:
            raise DataError("no series given to compute normalization statistics from")
        return cls.from_stats(sum(local_stats(s) for s in series_list), factor)

    def to_dict(self) -> dict:
        """JSON-friendly form (for run reports and checkpoints; the statistics are global, not secret
        shares, and are revealed to all parties by design)."""
        return {"columns": list(self.columns), "target": self.target, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "factor": self.factor}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """Inverse of :meth:`to_dict`; DataError if fields are missing or inconsistent."""
        try:
            cols = tuple(str(c) for c in d["columns"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
            norm = cls(cols, str(d["target"]), mean, std, float(d["factor"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"normalizer record is incomplete or malformed ({e!r})") from None
        if mean.shape != (len(cols),) or std.shape != (len(cols),) or norm.target not in cols \
                or not np.all(std > 0) or norm.factor <= 0:
            raise DataError(f"normalizer record is inconsistent: {len(cols)} columns, mean {mean.shape}, "
                            f"std {std.shape}, target '{norm.target}'")
        return norm

    def _check(self, series: TimeSeries) -> None:
        if series.stat_columns != self.columns or series.target_name != self.target:
            raise DataError(f"{series.source}: columns {list(series.stat_columns)} (target "
                            f"'{series.target_name}') do not match the normalizer's {list(self.columns)} "
                            f"(target '{self.target}')")

    def scaled(self, series: TimeSeries) -> tuple[np.ndarray, np.ndarray]:
        """Unclipped scaled values (n, d) and target (n,)."""
        self._check(series)
        d = series.n_features
        x = (series.values - self.mean[:d]) / (self.factor * self.std[:d])
        y = self.normalize_target(series.target)
        return x, y

    def normalize(self, series: TimeSeries) -> TimeSeries:
        """The series with inputs scaled and clipped to [-1, 1], and the target scaled (not clipped)."""
        x, y = self.scaled(series)
        return series.with_values(np.clip(x, -1.0, 1.0), y)

    def clipped_fraction(self, series: TimeSeries) -> float:
        """Fraction of input cells that :meth:`normalize` clips (a sign the factor is too small or the
        series drifts out of the range the statistics saw)."""
        x, _ = self.scaled(series)
        return float(np.mean(np.abs(x) > 1.0)) if x.size else 0.0

    def column_scale(self, column: str) -> float:
        """Original units per normalized unit of ``column`` (factor x its global std)."""
        return float(self.factor * self.std[self._index(column)])

    def normalize_column(self, column: str, x: np.ndarray) -> np.ndarray:
        """Values of ``column`` (any shape) in original units to normalized units (no clipping)."""
        return (np.asarray(x, dtype=np.float64) - self.mean[self._index(column)]) / self.column_scale(column)

    def denormalize_column(self, column: str, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalize_column`."""
        return np.asarray(x, dtype=np.float64) * self.column_scale(column) + self.mean[self._index(column)]

    def _index(self, column: str) -> int:
        if column not in self.columns:
            raise DataError(f"no normalization statistics for column '{column}'; the statistics cover "
                            f"{list(self.columns)}")
        return self.columns.index(column)

    @property
    def target_scale(self) -> float:
        """Original units per normalized unit of the target: MAE_original = MAE_normalized * this."""
        return self.column_scale(self.target)

    def normalize_target(self, y: np.ndarray) -> np.ndarray:
        """Target values (any shape) in original units to normalized units (no clipping)."""
        return self.normalize_column(self.target, y)

    def denormalize_target(self, y: np.ndarray) -> np.ndarray:
        """Normalized target values (any shape), e.g. predictions, back to original units."""
        return self.denormalize_column(self.target, y)
