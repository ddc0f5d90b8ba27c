"""The one in-memory form of a data holder's series: :class:`TimeSeries`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rhode.errors import DataError


@dataclass(frozen=True)
class TimeSeries:
    """A multivariate time series of one data holder, rows in time order.

    Attributes:
        values: (n, d) float64 input features, columns in ``feature_names`` order.
        feature_names: the d feature column names.
        target_name: the column that is forecast.
        target: (n,) float64 target values (the same numbers as ``values[:, target_index]`` when the
            target is also a feature; it is kept separately so it can be normalized without clipping).
        target_index: position of the target among the features (autoregressive forecast, the
            default of :func:`rhode.data.load_csv`), or None when the target is not an input.
        time: (n,) time stamps (``datetime64`` or float) or None when the source has no time column.
        time_column: name of the column the time stamps came from, or None.
        source: file path or bundled dataset name (with a partition suffix for partitions).
        segment_starts: row offsets where a contiguous stretch of time begins. A partition made of
            several chunks of a longer series has one segment per chunk; windows never cross them.
        ignored_columns: non-numeric columns of the source that were left out of the features.
        level_name: for a differenced series (:func:`rhode.data.differencing.difference`), the
            feature that holds the target's levels; the target is then its change. None otherwise.
    """

    values: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    target: np.ndarray
    target_index: int | None
    time: np.ndarray | None = None
    time_column: str | None = None
    source: str = "<array>"
    segment_starts: tuple[int, ...] = (0,)
    ignored_columns: tuple[str, ...] = field(default=())
    level_name: str | None = None

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        t = np.asarray(self.target, dtype=np.float64)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "target", t)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "segment_starts", tuple(int(s) for s in self.segment_starts))
        if v.ndim != 2 or v.shape[1] != len(self.feature_names):
            raise DataError(f"{self.source}: values must have shape (rows, {len(self.feature_names)}) "
                            f"to match the feature names, got {v.shape}")
        if t.shape != (v.shape[0],):
            raise DataError(f"{self.source}: target must have shape ({v.shape[0]},), got {t.shape}")
        if self.target_index is not None and self.feature_names[self.target_index] != self.target_name:
            raise DataError(f"{self.source}: feature {self.target_index} is "
                            f"'{self.feature_names[self.target_index]}', not the target '{self.target_name}'")
        if self.level_name is not None and self.level_name not in self.feature_names:
            raise DataError(f"{self.source}: the level column '{self.level_name}' is not a feature")
        if self.time is not None and len(self.time) != v.shape[0]:
            raise DataError(f"{self.source}: {len(self.time)} time stamps for {v.shape[0]} rows")
        s, n = self.segment_starts, v.shape[0]
        ok = s == (0,) or (s[:1] == (0,) and all(b > a for a, b in zip(s, s[1:], strict=False)) and s[-1] < n)
        if not ok:
            raise DataError(f"{self.source}: segment starts {s} must begin at 0 and increase strictly "
                            f"below the row count {n}")

    @classmethod
    def from_arrays(cls, values: np.ndarray, feature_names: Sequence[str], target_name: str, *,
                    target: np.ndarray | None = None, time: np.ndarray | None = None,
                    source: str = "<array>") -> TimeSeries:
        """Build a series from arrays: values (n, d); target (n,) defaults to the feature column
        named ``target_name``, which must then exist."""
        names = tuple(feature_names)
        if target is None:
            if target_name not in names:
                raise DataError(f"{source}: target '{target_name}' is not among the features {list(names)}; "
                                "pass target= explicitly")
            idx: int | None = names.index(target_name)
            target = np.asarray(values, dtype=np.float64)[:, idx]
        else:
            idx = names.index(target_name) if target_name in names else None
        return cls(values=values, feature_names=names, target_name=target_name, target=target,
                   target_index=idx, time=time, time_column=None if time is None else "time", source=source)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    @property
    def target_is_feature(self) -> bool:
        """True for an autoregressive forecast (the target's past values are inputs)."""
        return self.target_index is not None

    @property
    def stat_columns(self) -> tuple[str, ...]:
        """Columns that normalization statistics cover: the features, then the target if it is not one."""
        return self.feature_names if self.target_is_feature else (*self.feature_names, self.target_name)

    def segments(self) -> list[tuple[int, int]]:
        """Contiguous stretches as [start, stop) row ranges."""
        bounds = (*self.segment_starts, self.n_rows)
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    def take(self, rows: np.ndarray, segment_starts: Sequence[int], source: str | None = None) -> TimeSeries:
        """A new series of the given rows (in that order) with the given segment starts."""
        rows = np.asarray(rows, dtype=np.int64)
        return TimeSeries(values=self.values[rows], feature_names=self.feature_names,
                          target_name=self.target_name, target=self.target[rows],
                          target_index=self.target_index,
                          time=None if self.time is None else self.time[rows],
                          time_column=self.time_column, source=source or self.source,
                          segment_starts=tuple(segment_starts) if len(rows) else (0,),
                          ignored_columns=self.ignored_columns, level_name=self.level_name)

    def rows(self, start: int, stop: int, source: str | None = None) -> TimeSeries:
        """Rows [start, stop) keeping the segment structure."""
        starts = sorted({0, *(s - start for s in self.segment_starts if start < s < stop)})
        return self.take(np.arange(start, stop), starts, source)

    def with_values(self, values: np.ndarray, target: np.ndarray) -> TimeSeries:
        """The same series with replaced (e.g. normalized) values (n, d) and target (n,)."""
        return TimeSeries(values=values, feature_names=self.feature_names, target_name=self.target_name,
                          target=target, target_index=self.target_index, time=self.time,
                          time_column=self.time_column, source=self.source,
                          segment_starts=self.segment_starts, ignored_columns=self.ignored_columns,
                          level_name=self.level_name)

    def describe(self) -> str:
        """One line for logs and the CLI."""
        role = "also an input, autoregressive" if self.target_is_feature else "not an input"
        when = (f"sorted by time column '{self.time_column}'" if self.time_column
                else "file order, no time column")
        extra = f"; ignored non-numeric columns {list(self.ignored_columns)}" if self.ignored_columns else ""
        return (f"{self.source}: {self.n_rows} rows, features {list(self.feature_names)}, "
                f"target '{self.target_name}' ({role}), {when}{extra}")


def check_compatible(series_list: Sequence[TimeSeries]) -> None:
    """Raise DataError unless all parties' series have the same features (same order) and target."""
    if not series_list:
        raise DataError("no data holders given; every party needs a CSV file or a bundled partition")
    ref = series_list[0]
    for i, s in enumerate(series_list[1:], start=1):
        if s.feature_names != ref.feature_names:
            missing = [c for c in ref.feature_names if c not in s.feature_names]
            extra = [c for c in s.feature_names if c not in ref.feature_names]
            detail = (f"missing {missing}, extra {extra}" if missing or extra
                      else "same columns in a different order")
            raise DataError(f"party {i} ({s.source}) has features {list(s.feature_names)} but party 0 "
                            f"({ref.source}) has {list(ref.feature_names)}: {detail}. Give every party the "
                            "same feature columns (pass the same features list to each)")
        if s.target_name != ref.target_name or s.target_index != ref.target_index:
            raise DataError(f"party {i} ({s.source}) forecasts '{s.target_name}' but party 0 ({ref.source}) "
                            f"forecasts '{ref.target_name}'; use the same target column for every party")
