"""Baselines with known answers on hand-made series (persistence and drift on a ramp, seasonal naive
on a pure season, linear AR on a noiseless AR(1)), the seasonal period from the time column, strict
report.json, the divergence check; and one encrypted run with differencing against its mirror.

Tolerance of the encrypted run: TOL = 1e-3 on predictions in levels (normalized units), as in
test_engines.py: the `test` preset's refreshes re-encrypt at a 40-bit scale and the flooded decryption
leaves about 2^-20 relative error per revealed value, measured gaps are ~1e-6. A level differs from
the model's output by last + change · (scale of the change / scale of the level), and the change of a
smooth series has the smaller scale, so the gap in levels is at most the gap in model units; a wrong
reconstruction (a missing last level, the wrong scale) is off by ~1e-1.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rhode.data import Normalizer, TimeSeries, difference, forecast_windows, make_windows
from rhode.errors import RhodeError
from rhode.federated.baselines import accuracy, baselines, linear_ar, seasonal_period, time_step_notes
from rhode.federated.report import (
    NON_FINITE_KEY,
    DivergenceError,
    check_divergence,
    write_json,
)

TOL = 1e-3


def ramp_series(values: np.ndarray, time=None, segments=(0,)) -> TimeSeries:
    s = TimeSeries.from_arrays(values[:, None], ["y"], "y", time=time, source="s")
    return s.take(np.arange(s.n_rows), segments)


def windows(values: np.ndarray, T: int, h: int = 1, diff: bool = False, time=None):
    s = ramp_series(values, time)
    if diff:
        s = difference(s, h)
    norm = Normalizer.from_series([s])
    w = forecast_windows(s, norm, T, h)
    return s, w, make_windows(norm.normalize(s), T, h)


@pytest.mark.parametrize("diff", [False, True])
def test_persistence_and_drift_on_a_ramp(diff):
    x = 5.0 + 0.5 * np.arange(60)
    s, w, train = windows(x, T=3, h=2, diff=diff)
    b = baselines(w, [train], [s], horizon=2)
    # persistence is off by slope x horizon, in level-normalized units; drift (one-step slope) by half
    assert b["test_mae_persistence"] == pytest.approx(0.5 * 2 / w.map.scale, rel=1e-9)
    assert b["test_mae_drift"] == pytest.approx(0.5 / w.map.scale, rel=1e-9)
    x1 = 5.0 + 0.5 * np.arange(60)
    s1, w1, train1 = windows(x1, T=2, h=1, diff=diff)
    b1 = baselines(w1, [train1], [s1], horizon=1)
    assert b1["test_mae_drift"] == pytest.approx(0.0, abs=1e-12)  # drift is exact on a ramp
    assert b1["test_mae_linear_ar"] == pytest.approx(0.0, abs=1e-9)
    assert b1["seasonal_period"] is None and "no time column" in b1["baseline_notes"]["seasonal_naive"]


def test_drift_needs_two_levels():
    x = 5.0 + 0.5 * np.arange(30)
    s, w, train = windows(x, T=1)
    b = baselines(w, [train], [s], horizon=1)
    assert b["test_mae_drift"] is None and "--timesteps 2" in b["baseline_notes"]["drift"]
    s, w, train = windows(x, T=1, diff=True)  # the difference input gives the level before the window
    assert baselines(w, [train], [s], horizon=1)["test_mae_drift"] == pytest.approx(0.0, abs=1e-12)


def hourly(n: int, start: str = "2025-03-03T00:00", step: str = "h") -> np.ndarray:
    return np.datetime64(start) + np.arange(n) * np.timedelta64(1, step)


def test_seasonal_naive_exact_on_a_pure_season():
    n, p = 24 * 8, 24
    x = 10.0 + 3.0 * np.sin(2 * np.pi * np.arange(n) / p) + np.cos(4 * np.pi * np.arange(n) / p)
    s, w, train = windows(x, T=24, h=1, time=hourly(n))
    b = baselines(w, [train], [s], horizon=1)
    assert b["seasonal_period"] == 24 and "hourly" in b["baseline_notes"]["seasonal_naive"]
    assert b["test_mae_seasonal_naive"] == pytest.approx(0.0, abs=1e-12)
    assert b["test_mae_persistence"] > 0.05
    # horizon 30 > period: one more season back (lag 2 x 24 - 30 = 18 rows before the last)
    s, w, train = windows(x, T=24, h=30, time=hourly(n))
    assert baselines(w, [train], [s], horizon=30)["test_mae_seasonal_naive"] == pytest.approx(0, abs=1e-12)
    # a window too short for the season: null, and the report says what T it needs
    s, w, train = windows(x, T=3, h=1, time=hourly(n))
    b = baselines(w, [train], [s], horizon=1)
    assert b["test_mae_seasonal_naive"] is None and b["seasonal_period"] == 24
    assert "needs --timesteps 24 or more" in b["baseline_notes"]["seasonal_naive"]
    s, w, train = windows(x, T=3, h=1, diff=True, time=hourly(n))  # differenced: one level more
    assert "needs --timesteps 23 or more" in baselines(w, [train], [s], 1)["baseline_notes"]["seasonal_naive"]


@pytest.mark.parametrize("step, n, want", [
    ("m", 200, None),  # one minute: no known season
    (np.timedelta64(30, "m"), 200, 48),
    (np.timedelta64(15, "m"), 200, 96),
    ("h", 200, 24),
    ("D", 60, 7),
    ("W", 60, 52),
])
def test_seasonal_period_from_the_time_step(step, n, want):
    step = np.timedelta64(1, step) if isinstance(step, str) else step
    t = np.datetime64("2020-01-01T00:00") + np.arange(n) * step
    period, why = seasonal_period([ramp_series(np.arange(n, dtype=float), t)])
    assert period == want, why


def test_seasonal_period_business_days_months_and_unknown():
    days = np.datetime64("2024-01-01") + np.arange(120)  # 2024-01-01 is a Monday
    workdays = days[(days.astype(np.int64) + 3) % 7 < 5]
    assert seasonal_period([ramp_series(np.arange(len(workdays), dtype=float), workdays)])[0] == 5
    months = np.array([f"2020-{m:02d}-01" for m in range(1, 13)] + [f"2021-{m:02d}-01" for m in range(1, 13)],
                      dtype="datetime64[s]")
    assert seasonal_period([ramp_series(np.arange(24, dtype=float), months)])[0] == 12
    period, why = seasonal_period([ramp_series(np.arange(10.0), np.arange(10.0))])
    assert period is None and "plain numbers" in why
    # segments: the gap between two chunks of a partition does not count as a step
    t = hourly(40)
    t = np.concatenate([t[:20], t[20:] + np.timedelta64(500, "h")])
    s = ramp_series(np.arange(40.0), t, segments=(0, 20))
    assert seasonal_period([s])[0] == 24


def test_linear_ar_exact_on_a_noiseless_ar1():
    phi, c = 0.99, 2.0
    x = np.empty(150)
    x[0] = 5.0
    for t in range(1, 150):
        x[t] = c + phi * (x[t - 1] - c)
    for diff in (False, True):
        s, w, train = windows(x, T=2, diff=diff)
        assert np.max(np.abs(train[0])) < 1  # nothing clipped: the relation is exactly linear
        parties = [(train[0][:60], train[1][:60]), (train[0][60:], train[1][60:])]  # two holders, pooled
        np.testing.assert_allclose(linear_ar(parties, w.X), w.Y, atol=1e-9)
        b = baselines(w, parties, [s], horizon=1)
        assert b["test_mae_linear_ar"] == pytest.approx(0.0, abs=1e-9)
        assert b["test_mae_persistence"] > 1e-3


def test_accuracy_entries_and_forecasts():
    x = 5.0 + 0.5 * np.arange(40) + np.sin(np.arange(40))
    s, w, train = windows(x, T=3, diff=True)
    outputs = {"encrypted": w.Y + 0.01, "mirror": w.Y, "plaintext": w.Y - 0.02}
    entries, forecasts = accuracy(w, outputs, [train], [s], horizon=1)
    ratio = w.map.norm.target_scale / w.map.scale  # model units -> level units
    assert entries["test_mae_mirror"] == pytest.approx(0.0, abs=1e-12)
    assert entries["test_mae_encrypted"] == pytest.approx(0.01 * ratio, rel=1e-9)
    assert entries["max_abs_prediction_diff_vs_mirror"] == pytest.approx(0.01 * ratio, rel=1e-9)
    assert entries["test_mae_encrypted_vs_persistence"] == pytest.approx(
        entries["test_mae_encrypted"] / entries["test_mae_persistence"])
    assert entries["test_mae_persistence_original_units"] == pytest.approx(
        np.mean(np.abs(forecasts["persistence"] - forecasts["truth"])))
    np.testing.assert_allclose(forecasts["truth"], x[1 + 3:], atol=1e-9)
    np.testing.assert_allclose(forecasts["persistence"], x[3:-1], atol=1e-9)
    np.testing.assert_allclose(forecasts["mirror"], forecasts["truth"], atol=1e-9)
    assert "test_mae_naive" not in entries


def _no_constants(name: str):
    raise AssertionError(f"{name} token in report.json")


def test_report_json_is_strict(tmp_path):
    data = {"a": float("nan"), "b": [1.0, math.inf], "c": np.float64("nan"), "d": np.array([1.0, -np.inf]),
            "ok": {"x": np.int64(3), "y": (1, 2)}, "history": [{"loss": 0.1}, {"loss": float("nan")}]}
    path = write_json(tmp_path / "report.json", data)
    back = json.loads(path.read_text(), parse_constant=_no_constants)
    assert back["a"] is None and back["b"] == [1.0, None] and back["c"] is None and back["d"] == [1.0, None]
    assert back["ok"] == {"x": 3, "y": [1, 2]}
    assert back[NON_FINITE_KEY] == ["a", "b[1]", "c", "d[1]", "history[1].loss"]
    write_json(tmp_path / "fine.json", {"a": 1.0})
    assert NON_FINITE_KEY not in json.loads((tmp_path / "fine.json").read_text())


def _history(*losses):
    return [{"iteration": i + 1, "loss_encrypted": v} for i, v in enumerate(losses)]


def test_divergence_check():
    check_divergence([], 0.8)
    check_divergence(_history(0.03, 0.02, 0.05), 0.8)
    check_divergence(_history(1e-4, 0.05), 0.8)  # 500x, but still a small loss: not divergence
    check_divergence(_history(None, 0.05), 0.8)
    cases = [((0.03, float("nan")), "not a finite number"), ((0.03, math.inf), "not a finite"),
             ((0.03, 0.2, 5e3), "above the bound 1000"), ((0.005, 0.9, 1.5), "300 times the first")]
    for losses, why in cases:
        with pytest.raises(DivergenceError) as e:
            check_divergence(_history(*losses), 1.5)
        msg = str(e.value)
        assert why in msg and "\n" not in msg
        assert "learning rate 1.5 is too large" in msg and "lower --learning-rate (e.g. to 0.75)" in msg
        assert f"global iteration {len(losses)}" in msg
        assert f"the checkpoint of iteration {len(losses) - 1} is kept" in msg
        assert isinstance(e.value, RhodeError)
    with pytest.raises(DivergenceError, match="no checkpoint was written"):
        check_divergence(_history(2e3), 0.8)


@pytest.mark.slow
def test_encrypted_run_with_differencing_equals_its_mirror_in_levels(tmp_path):
    from rhode.federated.config import RunConfig
    from rhode.federated.run import run_training, summary

    cfg = RunConfig(dataset="electricity", max_rows=600, parties=3, hidden=3, timesteps=2, batch=8,
                    learning_rate=0.7, local_steps=1, global_iterations=2, max_test_windows=12,
                    preset="test", seed=3, difference=True)
    report = run_training(cfg, tmp_path / "run", progress=False)
    back = json.loads((tmp_path / "run" / "report.json").read_text(), parse_constant=_no_constants)
    assert NON_FINITE_KEY not in back
    assert back["features"] == ["demand_mw", "demand_mw_diff"] and back["target"] == "demand_mw"
    assert back["model_target"] == "demand_mw_diff"
    assert back["max_abs_prediction_diff_vs_mirror"] <= TOL
    assert back["max_abs_weight_diff_vs_mirror"] <= TOL
    assert abs(back["test_mae_encrypted"] - back["test_mae_mirror"]) <= TOL
    for key in ("test_mae_persistence", "test_mae_drift", "test_mae_linear_ar", "test_mae_plaintext"):
        assert 0 < back[key] < 1, key
    assert back["seasonal_period"] == 48 and back["test_mae_seasonal_naive"] is None
    assert "--timesteps 47" in back["baseline_notes"]["seasonal_naive"]
    assert back["test_mae_encrypted_vs_persistence"] == pytest.approx(
        back["test_mae_encrypted"] / back["test_mae_persistence"])
    # predictions.csv in levels (original units, MW): the truth is the demand itself, not its change
    rows = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "truth,encrypted,mirror,plaintext,persistence" and len(rows) == 13
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert table[:, 0].min() > 1e4  # demand in MW (~20,000-40,000); a change would be near 0
    mae_mw = np.mean(np.abs(table[:, 1] - table[:, 0]))
    assert mae_mw == pytest.approx(back["test_mae_encrypted_original_units"], rel=1e-3)
    assert "persistence" in summary(report) and "linear AR" in summary(report)

    # `rhode predict` and the Flower querier read a querier's CSV the way the holders' data was read:
    # differenced, forecasts back in levels
    from importlib import resources

    from rhode.federated.flower.querier import FlowerQuerier
    from rhode.federated.run import run_prediction

    with resources.as_file(resources.files("rhode.data") / "bundled" / "electricity.csv") as src:
        lines = src.read_text().splitlines()
    (tmp_path / "query.csv").write_text("\n".join([lines[0], *lines[-30:]]) + "\n")
    level = np.array([float(r.split(",")[1]) for r in lines[-30:]])
    pred = run_prediction(tmp_path / "run", tmp_path / "query.csv", tmp_path / "query")
    rows = (tmp_path / "query" / "predictions.csv").read_text().splitlines()[1:]
    got = np.array([[float(v) for v in r.split(",")[1:]] for r in rows])
    assert pred["windows"] == len(rows) == 30 - 1 - 2  # first row dropped (no difference), T = 2
    np.testing.assert_allclose(got[:, 1], level[3:], rtol=1e-5)  # truth: the demand 3 rows on
    assert pred["test_mae_persistence"] == pytest.approx(np.mean(np.abs(level[2:-1] - level[3:])), rel=1e-4)
    assert pred["test_mae"] == pytest.approx(np.mean(np.abs(got[:, 0] - got[:, 1])), rel=1e-4)
    w = FlowerQuerier(tmp_path / "run").forecast(tmp_path / "query.csv")
    assert w.X.shape == (27, 2, 2) and w.map.differenced
    np.testing.assert_allclose(w.map.original(w.truth)[:, 0], level[3:], rtol=1e-9)


def test_time_step_notes_name_the_gaps():
    x = np.sin(np.arange(60) / 5.0)
    regular = ramp_series(x, time=hourly(60))
    assert time_step_notes([regular]) == []
    t = hourly(60)
    t[30:] += np.timedelta64(5, "h")  # one gap of 6 hours instead of 1
    (note,) = time_step_notes([regular, ramp_series(x, time=t)])
    assert note.startswith("s: 1 of 59 time steps differ from the usual 1 h (largest 6 h)"), note
    s, w, train = windows(x, T=3, h=1, time=t)
    assert baselines(w, [train], [s], horizon=1)["time_step_notes"] == time_step_notes([s])
    assert time_step_notes([ramp_series(x, time=np.arange(60.0) * 2)]) == []  # plain-number steps
