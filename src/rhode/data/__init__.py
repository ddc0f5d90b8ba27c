"""Data layer: CSV and bundled datasets, windowing, time-ordered splits, normalization from additive
(encryptable) global statistics, and IID / non-IID partitions for experiments.

Typical data-holder flow::

    series = load_csv("mine.csv", target="demand")          # or load_bundled("electricity")
    train, test = train_test_split(series, 0.2)
    stats = local_stats(train)                               # summed across parties (encrypted)
    norm = Normalizer.from_stats(total_stats)
    X, Y = make_windows(norm.normalize(train), timesteps=16)  # X (n, 16, d), Y (n, 1)

Differencing (:mod:`rhode.data.differencing`): ``difference(train)`` after the split adds the target's
first difference as an input and makes its next change the target; ``forecast_windows`` gives the
windows with the target's levels, ``Windows.levels`` turns model outputs back into levels.
"""

from rhode.data.bundled import BUNDLED, BundledDataset, load_bundled
from rhode.data.csvload import load_csv
from rhode.data.differencing import LevelMap, Windows, difference, forecast_windows, level_of
from rhode.data.normalize import Normalizer, Stats, local_stats
from rhode.data.partition import SCHEMES, partition
from rhode.data.timeseries import TimeSeries, check_compatible
from rhode.data.windows import make_windows, min_rows, train_test_split, window_rows

__all__ = [
    "BUNDLED",
    "SCHEMES",
    "BundledDataset",
    "LevelMap",
    "Normalizer",
    "Stats",
    "TimeSeries",
    "Windows",
    "check_compatible",
    "difference",
    "forecast_windows",
    "level_of",
    "load_bundled",
    "load_csv",
    "local_stats",
    "make_windows",
    "min_rows",
    "partition",
    "train_test_split",
    "window_rows",
]
