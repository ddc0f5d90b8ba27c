"""IID and non-IID partitions: coverage, contiguity, determinism and the intended heterogeneity."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import SCHEMES, TimeSeries, make_windows, min_rows, partition
from rhode.errors import DataError


def ramp(n: int = 1000) -> TimeSeries:
    """Target = row index plus a seasonal wiggle; values carry the row index so rows can be traced."""
    idx = np.arange(n, dtype=float)
    return TimeSeries.from_arrays(np.column_stack([idx, np.sin(idx / 10)]), ["row", "s"], "y",
                                  target=idx + 50 * np.sin(idx / 50), time=np.arange(n), source="ramp")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("n_parties", [1, 3, 10])
def test_partition_covers_every_row_once_in_time_order(scheme, n_parties):
    s = ramp()
    parts = partition(s, n_parties, scheme, seed=3, min_rows=min_rows(8))
    assert len(parts) == n_parties
    rows = np.concatenate([p.values[:, 0] for p in parts])
    np.testing.assert_array_equal(np.sort(rows), np.arange(1000))
    for p in parts:
        assert np.all(np.diff(p.values[:, 0]) > 0)  # time order kept
        for a, b in p.segments():  # each segment is contiguous in the original series
            np.testing.assert_array_equal(np.diff(p.values[a:b, 0]), 1)
            assert b - a >= min_rows(8)
        X, Y = make_windows(p, 8)
        # no window spans two chunks: consecutive rows inside every window
        assert np.all(np.diff(X[:, :, 0], axis=1) == 1)
        assert p.feature_names == s.feature_names and f"{scheme} party" in p.source


def test_iid_is_deterministic_and_homogeneous():
    s = ramp()
    a = partition(s, 3, "iid", seed=7)
    b = partition(s, 3, "iid", seed=7)
    c = partition(s, 3, "iid", seed=8)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.values, y.values) for x, y in zip(a, c, strict=True))
    means = [p.target.mean() for p in a]
    assert max(means) - min(means) < 0.2 * s.target.std()  # similar distributions
    assert all(len(p.segment_starts) > 1 for p in a)


def test_non_iid_schemes_are_heterogeneous():
    s = ramp()
    blocks = partition(s, 4, "blocks")
    assert [p.n_rows for p in blocks] == [250] * 4 and all(p.segment_starts == (0,) for p in blocks)
    np.testing.assert_array_equal(blocks[1].values[:, 0], np.arange(250, 500))
    skew = partition(s, 4, "skew")
    means = [p.target.mean() for p in skew]
    assert means == sorted(means) and means[-1] - means[0] > 1.5 * s.target.std()
    # value ranges barely overlap: party 1's maximum sits below party 4's minimum
    assert skew[0].target.max() < skew[-1].target.min()


def test_partition_errors():
    s = ramp(100)
    with pytest.raises(DataError, match="unknown partition scheme 'dirichlet'"):
        partition(s, 2, "dirichlet")
    with pytest.raises(DataError, match="must be >= 1"):
        partition(s, 0)
    with pytest.raises(DataError, match="give 1 rows per chunk, fewer than the 9 needed.*fewer parties"):
        partition(s, 10, "iid", min_rows=9)
