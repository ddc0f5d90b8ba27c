"""Additive statistics, global normalization and its inverse, against numpy mean/std."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import Normalizer, Stats, TimeSeries, local_stats, partition
from rhode.errors import DataError


def random_series(n: int = 300, seed: int = 0, target_is_feature: bool = True) -> TimeSeries:
    rng = np.random.default_rng(seed)
    v = rng.normal([10.0, -5.0, 1e6], [2.0, 0.5, 1e5], size=(n, 3))
    if target_is_feature:
        return TimeSeries.from_arrays(v, ["a", "b", "c"], "b")
    return TimeSeries.from_arrays(v, ["a", "b", "c"], "y", target=rng.normal(50, 4, size=n))


@pytest.mark.parametrize("target_is_feature", [True, False])
def test_summed_local_stats_equal_global_mean_std(target_is_feature):
    s = random_series(target_is_feature=target_is_feature)
    parts = partition(s, 4, "skew", min_rows=2)
    total = sum(local_stats(p) for p in parts)
    assert isinstance(total, Stats) and total.count == s.n_rows
    norm = Normalizer.from_stats(total)
    cols = s.values if target_is_feature else np.column_stack([s.values, s.target])
    np.testing.assert_allclose(norm.mean, cols.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, cols.std(axis=0), rtol=1e-8)
    assert norm.columns == s.stat_columns and norm.target == s.target_name


def test_normalize_clips_inputs_not_target_and_inverts():
    s = random_series(target_is_feature=False)
    norm = Normalizer.from_series([s], factor=1.0)  # factor 1: about a third of the cells exceed 1
    n = norm.normalize(s)
    assert np.abs(n.values).max() == 1.0
    expected = np.clip((s.values - s.values.mean(0)) / s.values.std(0), -1, 1)
    np.testing.assert_allclose(n.values, expected, atol=1e-9)
    assert np.abs(n.target).max() > 1.0  # target is not clipped
    frac = norm.clipped_fraction(s)
    assert 0.25 < frac < 0.4 and frac == pytest.approx(np.mean(np.abs(expected) == 1.0))
    np.testing.assert_allclose(norm.denormalize_target(n.target), s.target, rtol=1e-12)
    np.testing.assert_allclose(norm.normalize_target(s.target), n.target, rtol=1e-12)
    assert norm.target_scale == pytest.approx(s.target.std())


def test_default_factor_three_keeps_gaussian_data_inside():
    s = random_series(5000, seed=1)
    norm = Normalizer.from_series([s])
    assert norm.factor == 3.0 and norm.clipped_fraction(s) < 0.005
    assert np.abs(norm.normalize(s).values).std() == pytest.approx(np.sqrt(1 - 2 / np.pi) / 3, rel=0.05)


def test_mismatches_and_degenerate_input():
    a = local_stats(random_series(target_is_feature=True))
    b = local_stats(random_series(target_is_feature=False))
    with pytest.raises(DataError, match="every party must use the same"):
        _ = a + b
    norm = Normalizer.from_stats(a)
    with pytest.raises(DataError, match="do not match the normalizer"):
        norm.normalize(random_series(target_is_feature=False))
    one = TimeSeries.from_arrays(np.ones((1, 1)), ["x"], "x")
    with pytest.raises(DataError, match="at least 2 rows"):
        Normalizer.from_stats(local_stats(one))
    const = TimeSeries.from_arrays(np.full((5, 1), 7.0), ["x"], "x")
    n = Normalizer.from_series([const])
    assert n.std[0] == 1.0 and np.all(n.normalize(const).values == 0.0)


def test_normalizer_dict_round_trip():
    import json

    norm = Normalizer.from_series([random_series()])
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back.columns == norm.columns and back.target == norm.target and back.factor == norm.factor
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    bad = norm.to_dict() | {"std": [1.0]}
    with pytest.raises(DataError, match="inconsistent"):
        Normalizer.from_dict(bad)
    with pytest.raises(DataError, match="incomplete or malformed"):
        Normalizer.from_dict({"columns": ["a"]})
