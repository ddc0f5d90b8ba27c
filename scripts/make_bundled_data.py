"""Regenerate src/rhode/data/bundled/*.csv from the copies of the data inside pmdarima (offline).

Run from the repository root with pmdarima installed (it is not a rhode dependency):
    .venv/bin/python scripts/make_bundled_data.py
The output is deterministic; sources and licences are in src/rhode/data/bundled/SOURCE.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pmdarima.datasets import load_msft, load_taylor

OUT = Path(__file__).resolve().parent.parent / "src" / "rhode" / "data" / "bundled"

# Taylor (2003): half-hourly demand from Monday 5 June 2000 to Sunday 27 August 2000 (12 weeks x 336).
# The series carries no clock; we assume the first value is the half hour starting 00:00 on 5 June.
TAYLOR_START = np.datetime64("2000-06-05T00:00")
# MSFT: a period in which the (adjusted) price stays within one range (12.7 to 31.1), so that statistics
# from the earlier 80 % (the training part) cover the test part; 2013-2017 rises from 27 to 84.
STOCK_FIRST, STOCK_LAST = "2001-01-01", "2012-12-31"


def write_electricity() -> Path:
    demand = np.asarray(load_taylor(), dtype=np.float64)
    assert demand.shape == (4032,) and np.all(demand == np.round(demand))
    stamps = TAYLOR_START + np.arange(demand.size) * np.timedelta64(30, "m")
    path = OUT / "electricity.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "demand_mw"])
        for t, v in zip(stamps, demand, strict=True):
            w.writerow([str(t), int(v)])
    return path


def write_stocks() -> Path:
    df = load_msft()
    dates = df["Date"].astype(str)
    df = df[(dates >= STOCK_FIRST) & (dates <= STOCK_LAST)]
    path = OUT / "stocks.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["date", "open", "high", "low", "close", "volume"])
        for row in df.itertuples(index=False):
            w.writerow([row.Date, *(f"{float(getattr(row, c)):.4f}".rstrip("0").rstrip(".")
                                    for c in ("Open", "High", "Low", "Close")), int(row.Volume)])
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for p in (write_electricity(), write_stocks()):
        print(f"{p} ({p.stat().st_size / 1024:.0f} KiB)")
