"""Differencing as a forecasting transform, and the target's levels behind each window.

A differenced series (:func:`difference`) adds the first difference of the target,
Δx_s = x_s − x_{s−1}, as the last input feature and makes the change over the horizon,
x_s − x_{s−h}, the target (for h = 1 that is the Δ column itself). The level column stays an input.
The first h rows of every segment are dropped (no difference there), so a difference never spans a
segment boundary (two chunks, two holders); split into train and test *before* differencing so none
spans the split either. The model is trained on the change; the forecast in levels is the window's
last level plus the predicted change (:class:`LevelMap`).

:func:`forecast_windows` gives the model's windows together with the target's levels in the
window (for baselines) and the level it forecasts, in *level-normalized units*
(x − mean) / (factor · std) of the level column under the same global statistics: the units every
MAE of the report is given in, differenced or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rhode.data.normalize import Normalizer
from rhode.data.timeseries import TimeSeries
from rhode.data.windows import window_rows
from rhode.errors import DataError


def diff_column(level: str) -> str:
    """Name of the first-difference input column of the level column ``level``."""
    return f"{level}_diff"


def change_column(level: str, horizon: int) -> str:
    """Name of the target of a differenced series: the change over the horizon."""
    return diff_column(level) if horizon == 1 else f"{diff_column(level)}{horizon}"


def level_of(target: str, horizon: int) -> str:
    """The level column whose change over ``horizon`` is the target column ``target``."""
    suffix = change_column("", horizon)
    if not target.endswith(suffix) or len(target) == len(suffix):
        raise DataError(f"'{target}' is not the change over {horizon} steps of a differenced target")
    return target[: -len(suffix)]


def difference(series: TimeSeries, horizon: int = 1) -> TimeSeries:
    """The differenced form of ``series`` (module docstring).

    Args:
        series: (n, d) rows in time order; its target must be one of its features (the level that
            the predicted change is added to).
        horizon: the forecast horizon h.

    Returns:
        A series with (n − h·segments, d + 1) values (the Δ column last), target x_s − x_{s−h},
        ``level_name`` = the original target; segments shorter than h + 1 rows vanish.
    """
    if series.level_name is not None:
        raise DataError(f"{series.source}: the series is already differenced")
    if not series.target_is_feature:
        raise DataError(
            f"{series.source}: differencing needs the target '{series.target_name}' among the input "
            "features (the forecast is its last value plus the predicted change); add it to the "
            "features or turn differencing off (--no-difference)")
    level, d = series.target_name, series.n_features
    name, change = diff_column(level), change_column(level, horizon)
    taken = [c for c in (name, change) if c in series.feature_names]
    if taken:
        raise DataError(f"{series.source}: a column is already named {taken[0]!r}; rename it to use "
                        "differencing")
    keep, starts = [], []
    for a, b in series.segments():
        if b - a > horizon:
            starts.append(sum(len(k) for k in keep))
            keep.append(np.arange(a + horizon, b))
    rows = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    x = series.target
    values = np.column_stack([series.values[rows], x[rows] - x[rows - 1]])
    step = x[rows] - x[rows - horizon]
    return TimeSeries(values=values, feature_names=(*series.feature_names, name),
                      target_name=change, target=step, target_index=d if horizon == 1 else None,
                      time=None if series.time is None else series.time[rows],
                      time_column=series.time_column, source=series.source,
                      segment_starts=tuple(starts) or (0,), ignored_columns=series.ignored_columns,
                      level_name=level)


@dataclass(frozen=True)
class LevelMap:
    """How the model's normalized outputs become the target's levels.

    Attributes:
        norm: the global normalization.
        level: the level column (one of ``norm.columns``).
        differenced: True when the model's target is the change of the level.
    """

    norm: Normalizer
    level: str
    differenced: bool

    @property
    def scale(self) -> float:
        """Original units per level-normalized unit (MAE_original = MAE_level · scale)."""
        return self.norm.column_scale(self.level)

    def levels(self, y: np.ndarray, last: np.ndarray) -> np.ndarray:
        """(n, 1) level-normalized forecasts from model outputs ``y`` (n, 1) and the windows' last
        levels ``last`` (n, 1, level-normalized): ``last + change / scale`` when differenced, ``y``
        itself otherwise (the target is then the level, normalized the same way)."""
        y = np.asarray(y, dtype=np.float64)
        if not self.differenced:
            return y
        return np.asarray(last, dtype=np.float64) + self.norm.denormalize_target(y) / self.scale

    def original(self, level: np.ndarray) -> np.ndarray:
        """Level-normalized values (any shape) in original units."""
        return self.norm.denormalize_column(self.level, level)


@dataclass(frozen=True)
class Windows:
    """A series' model windows and the target's levels they forecast.

    Attributes:
        X: (n, T, d) normalized, clipped model inputs.
        Y: (n, 1) normalized model target (the level, or its change when differenced).
        history: (n, L) the target's levels at the window's rows, oldest first, level-normalized and
            unclipped; L = T, or T + 1 when differenced (the first row's difference implies the level
            before it).
        truth: (n, 1) the level to forecast, level-normalized.
        map: the output-to-level map.
    """

    X: np.ndarray
    Y: np.ndarray
    history: np.ndarray
    truth: np.ndarray
    map: LevelMap

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def last(self) -> np.ndarray:
        """(n, 1) the window's last level (persistence)."""
        return self.history[:, -1:]

    def levels(self, y: np.ndarray) -> np.ndarray:
        """(n, 1) level-normalized forecasts from the model's outputs ``y`` (n, 1) on these windows."""
        return self.map.levels(y, self.last)

    def head(self, n: int) -> Windows:
        """The first ``n`` windows."""
        return Windows(self.X[:n], self.Y[:n], self.history[:n], self.truth[:n], self.map)

    @staticmethod
    def concatenate(parts: Sequence[Windows]) -> Windows:
        """The windows of ``parts`` in order (they share one map)."""
        return Windows(*(np.concatenate([getattr(w, k) for w in parts])
                         for k in ("X", "Y", "history", "truth")), parts[0].map)


def forecast_windows(series: TimeSeries, norm: Normalizer, timesteps: int, horizon: int = 1) -> Windows:
    """The windows of ``series`` (plain or differenced, original units) under ``norm``, with the
    target's levels; X and Y equal ``make_windows(norm.normalize(series), ...)``."""
    idx, rows = window_rows(series, timesteps, horizon)
    scaled = norm.normalize(series)
    X, Y = scaled.values[idx], scaled.target[rows][:, None]
    if series.level_name is None:
        level, raw, truth = series.target_name, series.target[idx], series.target[rows]
    else:
        level = series.level_name
        li, di = series.feature_names.index(level), series.feature_names.index(diff_column(level))
        v = series.values
        before = v[idx[:, 0], li] - v[idx[:, 0], di]
        raw, truth = np.column_stack([before, v[idx, li]]), v[rows, li]
    lmap = LevelMap(norm, level, series.level_name is not None)
    return Windows(X, Y, norm.normalize_column(level, raw), norm.normalize_column(level, truth)[:, None],
                   lmap)
