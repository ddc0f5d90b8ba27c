"""The forecasts a report sets beside the encrypted model, and the report's accuracy entries.

Every figure is an MAE in *levels*, in the report's normalized units (the level column under the
global statistics, :mod:`rhode.data.differencing`), on the querier's test windows:

* persistence: next = last level;
* drift: x_T + (x_T − x_{T−1});
* seasonal naive: the level one season before the forecast time, when the period is known from the
  time column (:func:`seasonal_period`) and the window's history reaches back that far;
* linear AR: a plaintext least-squares linear model on the same (clipped, normalized) window inputs
  and the same target as the encrypted model, fitted on all holders' training windows pooled: what a
  simple non-secure model gets;
* the models: encrypted, mirror (same polynomials, plaintext), plaintext (exact activations, same
  recipe), their outputs mapped to levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhode.data import TimeSeries, Windows

DAY = 86_400
#: time step in seconds -> (period in rows, what the step is): the daily season of sub-daily data,
#: the week of daily data, the year of weekly data
STEP_PERIODS = {900: (96, "quarter-hourly"), 1800: (48, "half-hourly"), 3600: (24, "hourly"),
                DAY: (7, "daily"), 7 * DAY: (52, "weekly")}


def persistence(history: np.ndarray) -> np.ndarray:
    """(n, 1) the last level of each window; ``history`` (n, L) levels, oldest first."""
    return history[:, -1:]


def drift(history: np.ndarray) -> np.ndarray | None:
    """(n, 1) x_T + (x_T − x_{T−1}), or None if the windows hold fewer than 2 levels."""
    if history.shape[1] < 2:
        return None
    return 2.0 * history[:, -1:] - history[:, -2:-1]


def seasonal_lag(period: int, horizon: int) -> int:
    """How many rows before the window's last one the seasonal forecast of ``horizon`` steps ahead
    reads: k·period − horizon with the smallest k ≥ 1 that makes it ≥ 0."""
    k = max(1, -(-horizon // period))
    return k * period - horizon


def seasonal_naive(history: np.ndarray, period: int, horizon: int) -> np.ndarray | None:
    """(n, 1) the level ``period`` rows (a whole number of seasons) before the forecast time, or None
    if the window history (n, L) does not reach back that far."""
    lag = seasonal_lag(period, horizon)
    if lag > history.shape[1] - 1:
        return None
    j = history.shape[1] - 1 - lag
    return history[:, j:j + 1]


def seasonal_period(series: Sequence[TimeSeries]) -> tuple[int | None, str]:
    """The season in rows from the time column's step, and a sentence saying how (or why not).

    The step is the median difference of consecutive time stamps within the segments of all
    ``series``: 15 min -> 96, 30 min -> 48, 1 h -> 24 (a day), 1 day -> 7 (a week; 5 when no row
    falls on a Saturday or Sunday in two weeks or more: business days), 1 week -> 52, 28-31 days
    -> 12 (a year). Other steps, plain-number time columns and files without a time column give None.
    """
    times = [s.time for s in series if s.time is not None]
    if not times:
        return None, "no time column: the seasonal period is unknown"
    if not all(np.issubdtype(t.dtype, np.datetime64) for t in times):
        return None, "the time column holds plain numbers, not dates: the seasonal period is unknown"
    secs = [np.asarray(t, dtype="datetime64[s]").astype(np.int64) for t in times]
    steps = np.concatenate([np.diff(t[a:b]) for s, t in zip(series, secs, strict=True)
                            for a, b in s.segments()] or [np.zeros(0, dtype=np.int64)])
    if not steps.size:
        return None, "too few time stamps to find the time step"
    step = int(np.median(steps))
    if step == DAY:
        every = np.concatenate(secs)
        weekday = (every // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if every.max() - every.min() >= 14 * DAY and not np.any(weekday >= 5):
            return 5, "period 5 rows: business-daily time column (no Saturday or Sunday rows)"
    if step in STEP_PERIODS:
        period, what = STEP_PERIODS[step]
        return period, f"period {period} rows: {what} time column"
    if 28 * DAY <= step <= 31 * DAY:
        return 12, "period 12 rows: monthly time column"
    return None, f"no known season for a time step of {step} s"


def _span(step: float, dated: bool) -> str:
    if not dated:
        return f"{step:g}"
    for unit, secs in (("days", DAY), ("h", 3600), ("min", 60)):
        if step >= secs:
            return f"{step / secs:g} {unit}"
    return f"{step:g} s"


def time_step_notes(series: Sequence[TimeSeries]) -> list[str]:
    """One sentence per series whose time column is not evenly spaced within its stretches: how many
    steps differ from its usual (median) step, and the largest. The run trains across such gaps (a
    window may span one); the report says so instead of accepting them silently."""
    notes = []
    for s in series:
        if s.time is None:
            continue
        dated = np.issubdtype(s.time.dtype, np.datetime64)
        t = np.asarray(s.time, dtype="datetime64[s]").astype(np.int64) if dated else np.asarray(s.time, float)
        steps = np.concatenate([np.diff(t[a:b]) for a, b in s.segments()] or [np.zeros(0)])
        if not steps.size:
            continue
        usual = float(np.median(steps))
        odd = steps != usual
        if np.any(odd):
            notes.append(f"{s.source}: {int(odd.sum())} of {steps.size} time steps differ from the usual "
                         f"{_span(usual, dated)} (largest {_span(float(steps.max()), dated)}); training "
                         "windows may span these gaps")
    return notes


def linear_ar(parties: Sequence[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
    """(m, 1) predictions on X (m, T, d) of the least-squares linear model (with intercept) fitted on
    every party's training windows (X_i (n_i, T, d), Y_i (n_i, 1)) pooled; model units."""
    def design(x: np.ndarray) -> np.ndarray:
        return np.column_stack([x.reshape(x.shape[0], -1), np.ones(x.shape[0])])

    A = np.concatenate([design(x) for x, _ in parties])
    b = np.concatenate([y for _, y in parties])
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return design(X) @ coef


def baselines(w: Windows, parties: Sequence[tuple[np.ndarray, np.ndarray]], series: Sequence[TimeSeries],
              horizon: int) -> dict:
    """The baselines' MAEs on the windows ``w`` (None where one cannot be computed, with the reason in
    ``baseline_notes``), ``seasonal_period``, ``baseline_notes`` and ``time_step_notes``
    (:func:`time_step_notes` of the training series)."""
    def mae(pred: np.ndarray | None) -> float | None:
        return None if pred is None else float(np.mean(np.abs(pred - w.truth)))

    T, L = w.X.shape[1], w.history.shape[1]
    notes = {}
    dr = drift(w.history)
    if dr is None:
        notes["drift"] = "needs 2 levels per window: use --timesteps 2 or more, or --difference"
    period, why = seasonal_period(series)
    sn = seasonal_naive(w.history, period, horizon) if period else None
    notes["seasonal_naive"] = why
    if period and sn is None:
        need = seasonal_lag(period, horizon) + 1 - (L - T)
        notes["seasonal_naive"] = (f"{why}, but a window holds only {L} levels (T = {T}): the seasonal "
                                   f"forecast needs --timesteps {need} or more")
    return {
        "test_mae_persistence": mae(persistence(w.history)),
        "test_mae_drift": mae(dr),
        "test_mae_seasonal_naive": mae(sn),
        "seasonal_period": period,
        "test_mae_linear_ar": mae(w.levels(linear_ar(parties, w.X))),
        "baseline_notes": notes,
        "time_step_notes": time_step_notes(series),
    }


def accuracy(w: Windows, outputs: dict[str, np.ndarray], parties: Sequence[tuple[np.ndarray, np.ndarray]],
             series: Sequence[TimeSeries], horizon: int) -> tuple[dict, dict[str, np.ndarray]]:
    """The report's accuracy entries and the forecasts in original units.

    Args:
        w: the querier's test windows.
        outputs: model name (encrypted, mirror, plaintext) -> its outputs (n, 1) in model units.
        parties: every holder's training windows, for the linear AR.
        series: the holders' training series (their time columns give the seasonal period).
        horizon: the forecast horizon.

    Returns:
        (entries, forecasts): ``test_mae_<model>``, the baselines, ``test_rmse_<model>``, the
        encrypted/persistence ratio, original-unit MAEs, ``max_abs_prediction_diff_vs_mirror`` (all in
        levels); and truth, each model and persistence as (n,) levels in original units.
    """
    levels = {k: w.levels(y) for k, y in outputs.items()}
    mae = {k: float(np.mean(np.abs(v - w.truth))) for k, v in levels.items()}
    base = baselines(w, parties, series, horizon)
    pers = base["test_mae_persistence"]
    entries = {f"test_mae_{k}": v for k, v in mae.items()}
    entries.update(base)
    entries.update({f"test_rmse_{k}": float(np.sqrt(np.mean((v - w.truth) ** 2))) for k, v in levels.items()})
    entries.update({
        "test_mae_encrypted_vs_persistence": mae["encrypted"] / pers if pers else None,
        "test_mae_encrypted_original_units": mae["encrypted"] * w.map.scale,
        "test_mae_plaintext_original_units": mae["plaintext"] * w.map.scale,
        "test_mae_persistence_original_units": pers * w.map.scale,
        "max_abs_prediction_diff_vs_mirror": float(np.max(np.abs(levels["encrypted"] - levels["mirror"]))),
    })
    forecasts = {"truth": w.map.original(w.truth)[:, 0]}
    forecasts.update({k: w.map.original(v)[:, 0] for k, v in levels.items()})
    forecasts["persistence"] = w.map.original(persistence(w.history))[:, 0]
    return entries, forecasts
