"""Reading one data holder's CSV file into a :class:`TimeSeries` (csv module + numpy, no pandas)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rhode.data.timeparse import TIME_HEADERS, numeric_times, parse_times
from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError

#: Cells read as "no value" (case-insensitive); any of them in a used column is an error.
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-", "?", "#n/a"})

AUTO = "auto"


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of every non-blank data row; checks the shape."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path (working directory is {os.getcwd()})")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8 CSV") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise DataError(f"{path}: the file is empty; it needs a header line and data rows")
    delimiter = ","
    if "," not in first:
        delimiter = ";" if ";" in first else "\t" if "\t" in first else ","
    try:
        parsed = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}); check quoting") from None
    numbered = [(i + 1, [c.strip() for c in row]) for i, row in enumerate(parsed)
                if any(c.strip() for c in row)]
    (header_line, header), body = numbered[0], numbered[1:]
    if any(not h for h in header):
        raise DataError(f"{path}: line {header_line}: the header has an empty column name "
                        f"(columns {header}); name every column")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{path}: line {header_line}: duplicate column names {dupes}; rename them")
    if not body:
        raise DataError(f"{path}: only a header line ({header}), no data rows")
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields but the header has {len(header)} "
                            f"({header}); fix that row (a stray or missing delimiter?)")
    return header, body


def _to_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _find_time_column(header: list[str], columns: dict[str, list[str]], requested: str | None
                      ) -> tuple[str | None, np.ndarray | None]:
    if requested is None:
        return None, None
    names = [requested] if requested != AUTO else sorted(header, key=lambda h: h.lower() not in TIME_HEADERS)
    for name in names:
        cells = columns[name]
        time_like = name.lower() in TIME_HEADERS or requested != AUTO
        times = parse_times(cells, allow_compact=time_like)
        if times is None and time_like:
            times = numeric_times(cells)
        if times is not None:
            return name, times
        if time_like:
            bad = next((c for c in cells
                        if parse_times([c], allow_compact=True) is None and _to_float(c) is None), cells[0])
            raise DataError(f"column '{name}' looks like a time column but holds '{bad}', which is neither a "
                            "number nor a date; use ISO 8601 dates (2000-06-05 or 2000-06-05T00:30) or pass "
                            "time_column=None to read the file in its row order")
    return None, None


def _column_values(path: Path, name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for k, (cell, line) in enumerate(zip(cells, lines, strict=True)):
        if cell.lower() in MISSING:
            raise DataError(f"{path}: line {line}, column '{name}' is empty or NaN ('{cell}'); fill in the "
                            "value or remove the row")
        v = _to_float(cell)
        if v is None:
            raise DataError(f"{path}: line {line}, column '{name}' holds '{cell}', which is not a number; "
                            "fix the value (use '.' as the decimal point, no thousands separators)")
        if not math.isfinite(v):
            raise DataError(f"{path}: line {line}, column '{name}' is infinite ('{cell}'); fix the value")
        out[k] = v
    return out


def _is_numeric_column(cells: list[str]) -> bool:
    """A column counts as numeric when most of its non-missing cells are numbers (a few bad cells are
    then reported as errors instead of silently dropping the column)."""
    present = [c for c in cells if c.lower() not in MISSING]
    return bool(present) and 2 * sum(_to_float(c) is not None for c in present) > len(present)


def load_csv(path: str | os.PathLike[str], target: str, features: Sequence[str] | None = None, *,
             time_column: str | None = AUTO, source: str | None = None) -> TimeSeries:
    """Read one data holder's CSV file (header line, then one row per time step).

    Args:
        path: the CSV file (comma, semicolon or tab separated, UTF-8).
        target: the column to forecast.
        features: input columns in this order; None means every numeric column except the time
            column, *including the target* (an autoregressive forecast: the target's past values are
            inputs). The returned series records this in ``target_index``.
        time_column: "auto" recognizes a date/time column (a header such as date/time/timestamp, or a
            column whose every cell is a date); rows are sorted by it and it is never a feature.
            A column name forces that column; None reads rows in file order.
        source: name recorded in the series (default: the path).

    Returns:
        TimeSeries with values (n, d) in feature order, rows sorted by time.

    Raises:
        DataError: saying file, line and column, for a missing/unreadable file, an empty or ragged
            file, a missing column (listing the available ones), a non-numeric, empty or NaN cell, or
            duplicate time stamps.
    """
    path = Path(path)
    header, body = _read_rows(path)
    lines = [line for line, _ in body]
    columns = {h: [row[j] for _, row in body] for j, h in enumerate(header)}
    if time_column not in (None, AUTO) and time_column not in columns:
        raise DataError(f"{path}: no time column '{time_column}'; the columns are {header}")
    try:
        tname, times = _find_time_column(header, columns, time_column)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    others = [h for h in header if h != tname]
    if target not in columns:
        raise DataError(f"{path}: no target column '{target}'; the columns are {header}")
    if target == tname:
        raise DataError(f"{path}: the target '{target}' is the time column; pick a numeric column "
                        f"among {others}")
    if features is None:
        feats = [h for h in others if _is_numeric_column(columns[h])]
        ignored = tuple(h for h in others if h not in feats)
        if target not in feats:
            feats.append(target)  # reported as non-numeric by _column_values below
    else:
        feats = list(features)
        ignored = ()
        if not feats:
            raise DataError(f"{path}: the features list is empty; give at least one column among {others}")
        missing = [f for f in feats if f not in columns]
        if missing:
            raise DataError(f"{path}: no feature column(s) {missing}; the columns are {header}")
        dupes = sorted({f for f in feats if feats.count(f) > 1})
        if dupes:
            raise DataError(f"{path}: feature(s) {dupes} listed twice; list each column once")
        if tname in feats:
            raise DataError(f"{path}: '{tname}' is the time column and cannot be a feature; pass "
                            "time_column=None to treat it as a plain number")
    data = {h: _column_values(path, h, columns[h], lines) for h in dict.fromkeys([*feats, target])}
    values = np.stack([data[f] for f in feats], axis=1)
    y = data[target]
    if times is not None:
        order = np.argsort(times, kind="stable")
        times, values, y = times[order], values[order], y[order]
        same = np.flatnonzero(times[1:] == times[:-1])
        if same.size:
            a, b = lines[order[same[0]]], lines[order[same[0] + 1]]
            raise DataError(f"{path}: lines {a} and {b} have the same time stamp ({times[same[0]]}) in "
                            f"column '{tname}'; a file must hold one series, one row per time step")
    return TimeSeries(values=values, feature_names=tuple(feats), target_name=target, target=y,
                      target_index=feats.index(target) if target in feats else None, time=times,
                      time_column=tname, source=source or str(path), ignored_columns=ignored)
