"""make_windows and train_test_split against explicit index arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import TimeSeries, make_windows, min_rows, train_test_split
from rhode.errors import DataError


def series(n: int, d: int = 2, segments=(0,)) -> TimeSeries:
    values = np.arange(n * d, dtype=float).reshape(n, d)
    return TimeSeries(values=values, feature_names=tuple(f"f{j}" for j in range(d)), target_name="y",
                      target=100.0 + np.arange(n), target_index=None, segment_starts=segments, source="s")


@pytest.mark.parametrize("T, h", [(1, 1), (3, 1), (4, 2), (5, 3)])
def test_windows_match_loop(T, h):
    s = series(12)
    X, Y = make_windows(s, T, h)
    n = 12 - T - h + 1
    assert X.shape == (n, T, 2) and Y.shape == (n, 1)
    for i in range(n):
        np.testing.assert_array_equal(X[i], s.values[i:i + T])
        assert Y[i, 0] == s.target[i + T - 1 + h]


def test_windows_do_not_cross_segments():
    s = series(10, segments=(0, 4, 5))  # segments of 4, 1 and 5 rows
    X, Y = make_windows(s, 3, 1)  # 1 window from the first, none from the second, 2 from the third
    assert X.shape == (3, 3, 2)
    np.testing.assert_array_equal(Y[:, 0], [103, 108, 109])
    np.testing.assert_array_equal(X[1], s.values[5:8])
    assert min_rows(3, 1) == 4


def test_too_few_rows():
    with pytest.raises(DataError, match="longest contiguous stretch has 5 rows but 5 timesteps "
                                        r"\+ horizon 1 need 6; lower the timesteps"):
        make_windows(series(5), 5)
    with pytest.raises(DataError, match="must both be at least 1"):
        make_windows(series(5), 0)


def test_split_is_time_ordered_and_keeps_segments():
    s = series(10, segments=(0, 6))
    tr, te = train_test_split(s, 0.25)
    assert (tr.n_rows, te.n_rows) == (7, 3)
    np.testing.assert_array_equal(tr.target, 100 + np.arange(7))
    np.testing.assert_array_equal(te.target, 100 + np.arange(7, 10))
    assert tr.segment_starts == (0, 6) and te.segment_starts == (0,)
    assert tr.source == "s[train]" and te.source == "s[test]"
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        train_test_split(s, 1.0)
    with pytest.raises(DataError, match="too few to keep a training set"):
        train_test_split(series(1), 0.5)


def test_timeseries_validates_shapes():
    with pytest.raises(DataError, match="values must have shape"):
        TimeSeries(values=np.zeros((3, 2)), feature_names=("a",), target_name="a", target=np.zeros(3),
                   target_index=0)
    with pytest.raises(DataError, match="segment starts"):
        series(5, segments=(0, 5))
    s = TimeSeries.from_arrays(np.ones((4, 2)), ["a", "b"], "b")
    assert s.target_index == 1 and s.target_is_feature
    with pytest.raises(DataError, match="not among the features"):
        TimeSeries.from_arrays(np.ones((4, 2)), ["a", "b"], "c")
