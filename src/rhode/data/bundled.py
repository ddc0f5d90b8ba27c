"""Datasets shipped inside the package (work offline). Sources and licences: bundled/SOURCE.md."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from rhode.data.csvload import load_csv
from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError


@dataclass(frozen=True)
class BundledDataset:
    """A bundled CSV: file name inside rhode/data/bundled, default target, one-line description."""

    file: str
    target: str
    description: str


BUNDLED: dict[str, BundledDataset] = {
    "electricity": BundledDataset(
        "electricity.csv", "demand_mw",
        "half-hourly electricity demand (MW), England and Wales, 5 Jun - 27 Aug 2000 (4,032 rows; "
        "Taylor 2003)"),
    "stocks": BundledDataset(
        "stocks.csv", "close",
        "daily Microsoft (MSFT) open/high/low/close/volume, 2001-2012 (3,017 trading days)"),
}


def load_bundled(name: str) -> TimeSeries:
    """Load a bundled dataset by name (see :data:`BUNDLED`); features are all its numeric columns
    (target included, autoregressive) and rows are sorted by its time column."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled dataset '{name}'; choose one of {sorted(BUNDLED)}")
    info = BUNDLED[name]
    with resources.as_file(resources.files("rhode.data") / "bundled" / info.file) as path:
        return load_csv(path, target=info.target, source=name)
