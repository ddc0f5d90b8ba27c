"""Recognizing and parsing a time column of a CSV file (standard library only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

#: Header names (case-insensitive) that mark a time column even when its values are plain numbers.
TIME_HEADERS = frozenset({"date", "time", "timestamp", "datetime", "date_time", "ds", "dt", "period"})

_DATE_FORMATS = ("%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d-%b-%Y", "%b %d %Y",
                 "%d %b %Y")
_CLOCK_SUFFIXES = ("", " %H:%M", " %H:%M:%S", "T%H:%M", "T%H:%M:%S")


def _iso(cells: Sequence[str]) -> np.ndarray | None:
    out = []
    for c in cells:
        try:
            dt = datetime.fromisoformat(c[:-1] + "+00:00" if c.endswith("Z") else c)
        except ValueError:
            return None
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        out.append(dt)
    return np.array(out, dtype="datetime64[s]")


def _with_format(cells: Sequence[str], fmt: str) -> np.ndarray | None:
    out = []
    for c in cells:
        try:
            out.append(datetime.strptime(c, fmt))
        except ValueError:
            return None
    return np.array(out, dtype="datetime64[s]")


def parse_times(cells: Sequence[str], *, allow_compact: bool = False) -> np.ndarray | None:
    """Parse every cell as a date/time, or return None if some cell does not parse.

    Tries ISO 8601 first (``2000-06-05``, ``2000-06-05 00:30``, ``2000-06-05T00:30:00+01:00``; zone
    offsets are converted to UTC), then ``yyyy/mm/dd``, day-first ``dd/mm/yyyy``, month-first
    ``mm/dd/yyyy``, ``dd.mm.yyyy``, ``05-Jun-2000`` and ``Jun 05 2000``, each with an optional
    ``HH:MM[:SS]`` clock. The first format that parses *every* cell wins (so all-ambiguous slash dates
    are read day-first). ``yyyymmdd`` is tried only with ``allow_compact`` (a time-like header), since
    such cells are also plain numbers. Returns (n,) ``datetime64[s]``.
    """
    cells = [c.strip() for c in cells]
    if not cells or any(not c for c in cells):
        return None
    if not allow_compact and all(_is_number(c) for c in cells):
        return None
    got = _iso(cells)
    if got is not None:
        return got
    for date_fmt in _DATE_FORMATS:
        if date_fmt == "%Y%m%d" and not allow_compact:
            continue
        for clock in _CLOCK_SUFFIXES:
            got = _with_format(cells, date_fmt + clock)
            if got is not None:
                return got
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def numeric_times(cells: Sequence[str]) -> np.ndarray | None:
    """Cells of a time-like column that are plain finite numbers (e.g. an hour index) as float64, or
    None (a cell that is no number, NaN or infinite)."""
    try:
        out = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return None
    return out if np.all(np.isfinite(out)) else None


def cell_format(cell: str) -> str | None:
    """The format :func:`parse_times` would read one cell with ("iso", or a strptime pattern, e.g.
    ``%d/%m/%Y %H:%M``), or None if the cell is no date; to name the cells of a column that mixes
    formats."""
    cell = cell.strip()
    if not cell:
        return None
    if _iso([cell]) is not None:
        return "iso"
    for date_fmt in _DATE_FORMATS:
        for clock in _CLOCK_SUFFIXES:
            if _with_format([cell], date_fmt + clock) is not None:
                return date_fmt + clock
    return None
