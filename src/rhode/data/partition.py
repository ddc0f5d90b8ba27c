"""Splitting one series among simulated data holders: homogeneous (IID) and heterogeneous (non-IID).

Rows are never shuffled one by one (that would destroy the windows); a series is cut into contiguous
chunks and whole chunks are dealt to parties. A party's chunks keep their time order and become
separate segments of its :class:`TimeSeries`, so windows never span two chunks.
"""

from __future__ import annotations

import numpy as np

from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError

#: scheme name -> one-line description (for the CLI and docs).
SCHEMES = {
    "iid": "homogeneous: the series is cut into n_parties * chunks_per_party contiguous chunks; each run of "
           "n_parties consecutive chunks is dealt one per party in a random order, so every party spans the "
           "whole period and sees the same distribution",
    "blocks": "non-IID: one contiguous time block per party (e.g. different seasons or market regimes)",
    "skew": "non-IID: chunks sorted by their mean target level; party 1 gets the lowest-level chunks, "
            "the last party the highest",
}


def _segment_starts(series: TimeSeries, rows: np.ndarray) -> list[int]:
    """Offsets in ``rows`` (sorted original indices) where a contiguous stretch begins."""
    original = set(series.segment_starts)
    breaks = [k for k in range(1, len(rows)) if rows[k] != rows[k - 1] + 1 or int(rows[k]) in original]
    return [0, *breaks]


def partition(series: TimeSeries, n_parties: int, scheme: str = "iid", seed: int = 0, *,
              chunks_per_party: int = 8, min_rows: int = 2) -> list[TimeSeries]:
    """Split ``series`` among ``n_parties`` data holders.

    Args:
        series: the whole series (rows in time order).
        n_parties: number of data holders (>= 1).
        scheme: "iid", "blocks" or "skew" (see :data:`SCHEMES`).
        seed: shuffling seed of "iid" (same seed -> same partition).
        chunks_per_party: chunks per party for "iid" and "skew" (the series is cut into
            ``n_parties * chunks_per_party`` contiguous chunks of near-equal length).
        min_rows: every chunk must have at least this many rows; pass ``min_rows(T, horizon)`` from
            :mod:`rhode.data.windows` so each chunk yields windows.

    Returns:
        n_parties series; party rows in time order, one segment per chunk (adjacent chunks merge).

    Raises:
        DataError: unknown scheme, n_parties < 1, or chunks shorter than ``min_rows``.
    """
    if scheme not in SCHEMES:
        raise DataError(f"unknown partition scheme '{scheme}' (--partition); choose one of {sorted(SCHEMES)}")
    if n_parties < 1 or chunks_per_party < 1:
        raise DataError(f"the number of data holders (--parties) {n_parties} and of chunks per party "
                        f"{chunks_per_party} must be >= 1")
    n = series.n_rows
    n_chunks = n_parties if scheme == "blocks" else n_parties * chunks_per_party
    if n // n_chunks < min_rows:
        blocks = scheme == "blocks"
        what = (f"{n_parties} blocks (one per data holder)" if blocks
                else f"{n_chunks} chunks ({chunks_per_party} per data holder)")
        other = "" if blocks else ", one block per data holder with --partition blocks"
        raise DataError(f"{series.source}: {n} rows cut into {what} give {n // n_chunks} rows per "
                        f"{'block' if blocks else 'chunk'}, fewer than the {min_rows} needed for windows; "
                        f"use fewer parties (--parties){other}, shorter windows (--timesteps) or a longer "
                        "series")
    chunks = np.array_split(np.arange(n), n_chunks)
    if scheme == "blocks":
        groups = [[p] for p in range(n_parties)]
    elif scheme == "iid":
        # stratified: each run of n_parties consecutive chunks is dealt one chunk per party in a random
        # order, so every party gets a chunk from every stretch of the period
        rng = np.random.default_rng(seed)
        groups = [[] for _ in range(n_parties)]
        for g in range(chunks_per_party):
            for k, p in enumerate(rng.permutation(n_parties)):
                groups[p].append(g * n_parties + k)
    else:
        level = np.array([series.target[c].mean() for c in chunks])
        order = np.argsort(level, kind="stable")
        groups = [list(g) for g in np.array_split(order, n_parties)]
    parties = []
    for p, group in enumerate(groups):
        rows = np.concatenate([chunks[c] for c in sorted(group)])
        parties.append(series.take(rows, _segment_starts(series, rows),
                                   f"{series.source}[{scheme} party {p + 1}/{n_parties}]"))
    return parties
