"""Differencing on hand-made series: the difference column and target, the rows dropped at every
segment start and at the train/test split, windows and the reconstruction of levels, the querier's
CSV read the way the holders' data was."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import (
    Normalizer,
    TimeSeries,
    difference,
    forecast_windows,
    level_of,
    load_csv,
    local_stats,
    make_windows,
)
from rhode.errors import DataError
from rhode.federated.config import RunConfig
from rhode.federated.dataprep import query_series, rows_needed, split_holder

X = np.array([1.0, 3, 6, 10, 15, 21, 28, 36, 45, 55, 66, 78])  # differences 2, 3, 4, ..., 12


def series(segments=(0,), n: int = 12) -> TimeSeries:
    values = np.column_stack([0.1 * np.arange(n), X[:n]])
    return TimeSeries(values=values, feature_names=("a", "y"), target_name="y", target=X[:n], target_index=1,
                      segment_starts=segments, source="s")


def test_difference_column_target_and_segments():
    d = difference(series(segments=(0, 5)))
    assert d.feature_names == ("a", "y", "y_diff") and d.target_name == "y_diff" and d.target_index == 2
    assert d.level_name == "y" and d.stat_columns == ("a", "y", "y_diff")
    # the first row of each segment (rows 0 and 5) is dropped: no difference there
    np.testing.assert_array_equal(d.values[:, 1], np.delete(X, [0, 5]))
    np.testing.assert_array_equal(d.values[:, 2], [2, 3, 4, 5, 7, 8, 9, 10, 11, 12])
    np.testing.assert_array_equal(d.target, d.values[:, 2])
    assert d.segment_starts == (0, 4)
    # horizon 2: the target is the change over two steps, the input still the first difference
    d2 = difference(series(segments=(0, 5)), horizon=2)
    assert d2.target_name == "y_diff2" and d2.target_index is None
    assert d2.stat_columns == ("a", "y", "y_diff", "y_diff2")
    np.testing.assert_array_equal(d2.values[:, 1], np.delete(X, [0, 1, 5, 6]))
    kept = np.array([2, 3, 4, 7, 8, 9, 10, 11])  # original rows: x_s - x_{s-2} = (s + 1) + s
    np.testing.assert_array_equal(d2.target, 2 * kept + 1)
    assert level_of("y_diff", 1) == "y" and level_of("y_diff2", 2) == "y"


@pytest.mark.parametrize("horizon", [1, 2])
def test_windows_and_levels(horizon):
    d = difference(series(segments=(0, 6)), horizon)
    norm = Normalizer.from_series([d])
    w = forecast_windows(d, norm, 2, horizon)
    X_, Y_ = make_windows(norm.normalize(d), 2, horizon)
    np.testing.assert_array_equal(w.X, X_)
    np.testing.assert_array_equal(w.Y, Y_)
    n_seg = [6 - horizon - 2 - horizon + 1, 6 - horizon - 2 - horizon + 1]
    assert len(w) == sum(n_seg)
    # the first window of segment 1 ends at original row 1 + horizon; its history reaches back to row
    # horizon - 1 (T = 2 levels plus the one implied by the first row's difference)
    lv = w.map.original(w.history)
    np.testing.assert_allclose(lv[0], X[horizon - 1:horizon + 2])
    np.testing.assert_allclose(w.map.original(w.truth)[:, 0][0], X[1 + 2 * horizon])
    # levels = last level + the change the target holds: exact reconstruction of the truth
    np.testing.assert_allclose(w.levels(w.Y), w.truth, atol=1e-12)
    # a forecast one normalized unit of change too high is that many level units too high
    off = w.levels(w.Y + 1.0) - w.truth
    np.testing.assert_allclose(off, norm.target_scale / w.map.scale, rtol=1e-12)
    plain = forecast_windows(series(), Normalizer.from_series([series()]), 2)
    assert w.map.differenced and not plain.map.differenced


def test_undifferenced_levels_are_the_target():
    s = series()
    norm = Normalizer.from_series([s])
    w = forecast_windows(s, norm, 3)
    np.testing.assert_array_equal(w.levels(w.Y), w.Y)
    np.testing.assert_allclose(w.truth, w.Y, atol=1e-15)
    np.testing.assert_allclose(w.map.original(w.history[0]), X[:3])
    assert w.history.shape == (len(w), 3)


def test_difference_never_crosses_the_train_test_split():
    cfg = RunConfig(dataset="electricity", timesteps=1, test_fraction=0.25, difference=True)
    s = series(segments=(0, 4))
    train, test = split_holder(s, cfg, 0)
    cut = 9  # 12 rows, ceil(0.25 * 12) = 3 test rows
    # train: original rows 1-3 and 5-8 (row 0 and the segment start 4 dropped)
    np.testing.assert_array_equal(train.values[:, 1], X[[1, 2, 3, 5, 6, 7, 8]])
    # test: original rows 10, 11; row 9 (first after the split) dropped, its difference would use row 8
    np.testing.assert_array_equal(test.values[:, 1], X[cut + 1:])
    np.testing.assert_array_equal(test.values[:, 2], np.diff(X[cut:]))
    assert set(test.values[:, 0]) <= set(0.1 * np.arange(cut, 12))
    assert rows_needed(cfg) == 3
    assert rows_needed(RunConfig(dataset="electricity", timesteps=1, difference=False)) == 2
    # without differencing the parts are the plain split
    tr, te = split_holder(s, RunConfig(dataset="electricity", timesteps=1, test_fraction=0.25,
                                       difference=False), 0)
    assert (tr.n_rows, te.n_rows) == (9, 3) and tr.level_name is None


def test_difference_refuses_what_it_cannot_do():
    s = series()
    no_input = TimeSeries(values=s.values[:, :1], feature_names=("a",), target_name="y", target=X,
                          target_index=None, source="s")
    with pytest.raises(DataError, match="needs the target 'y' among the input features"):
        difference(no_input)
    taken = TimeSeries.from_arrays(np.column_stack([X, X]), ["y", "y_diff"], "y", source="s")
    with pytest.raises(DataError, match="already named 'y_diff'"):
        difference(taken)
    with pytest.raises(DataError, match="already differenced"):
        difference(difference(s))
    cfg = RunConfig(dataset="electricity", timesteps=3, test_fraction=0.25, difference=True)
    with pytest.raises(DataError, match="too few for windows of 3 timesteps \\+ horizon 1 with differencing"):
        split_holder(TimeSeries.from_arrays(np.ones((12, 1)), ["y"], "y"), cfg, 0)


def test_querier_csv_is_differenced_like_the_holders(tmp_path):
    rows = ["date,temp,load"] + [f"2025-01-{1 + i // 24:02d} {i % 24:02d}:00,{i * 0.5:.1f},{X[i % 12] + i}"
                                 for i in range(30)]
    (tmp_path / "q.csv").write_text("\n".join(rows) + "\n")
    cfg = RunConfig(data=("a.csv", "b.csv"), target="load", difference=True)
    held = difference(load_csv(tmp_path / "q.csv", "load"))
    q = query_series(tmp_path / "q.csv", local_stats(held), cfg)
    assert q.feature_names == ("temp", "load", "load_diff") and q.n_rows == 29
    np.testing.assert_array_equal(q.values, held.values)
    bundled = RunConfig(dataset="electricity", difference=True)  # no --target: the level from the stats
    assert query_series(tmp_path / "q.csv", local_stats(held), bundled).n_rows == 29
    plain = RunConfig(data=("a.csv", "b.csv"), target="load", difference=False)
    with pytest.raises(DataError, match="the model was trained on"):
        query_series(tmp_path / "q.csv", local_stats(held), plain)
