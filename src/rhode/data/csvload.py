"""Reading one data holder's CSV file into a :class:`TimeSeries` (csv module + numpy, no pandas)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rhode.data.timeparse import TIME_HEADERS, cell_format, numeric_times, parse_times
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
    if not numbered:
        raise DataError(f"{path}: the file holds no values, only delimiters or blank lines; it needs a "
                        "header line and data rows")
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


def _find_time_column(header: list[str], columns: dict[str, list[str]], requested: str | None,
                      lines: list[int]) -> tuple[str | None, np.ndarray | None]:
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
            raise DataError(_bad_time_cell(name, cells, lines))
    return None, None


_NOT_TIME = ("or, if it is not a time column, rename it (a header such as date, time or timestamp marks a "
             "time column) or remove it (load_csv: time_column=None reads the rows in file order)")


def _bad_time_cell(name: str, cells: list[str], lines: list[int]) -> str:
    """Why the time-like column ``name`` holds no time stamps: its first offending cell, with its line."""
    for cell, line in zip(cells, lines, strict=True):
        number = _to_float(cell)
        if cell.lower() in MISSING or (number is not None and not math.isfinite(number)):
            return (f"line {line}: the time column '{name}' has no time stamp ('{cell}'); fill it in or "
                    "remove the row")
    formats = [cell_format(c) for c in cells]
    for cell, line, fmt in zip(cells, lines, formats, strict=True):
        if fmt is None and _to_float(cell) is None:
            return (f"line {line}: column '{name}' looks like a time column but holds '{cell}', which is "
                    "neither a number nor a date; write every time stamp as an ISO 8601 date (2000-06-05 "
                    f"or 2000-06-05T00:30), {_NOT_TIME}")
    first = next((k for k, f in enumerate(formats) if f is not None), 0)
    odd = next((k for k, f in enumerate(formats) if f != formats[first]), len(cells) - 1)
    first, odd = sorted((first, odd))
    return (f"lines {lines[first]} and {lines[odd]}: the time column '{name}' mixes formats "
            f"('{cells[first]}', '{cells[odd]}'); write every time stamp the same way, e.g. as an ISO 8601 "
            "date (2000-06-05 or 2000-06-05T00:30)")


def _sort_by_time(path: Path, tname: str, times: np.ndarray, cells: list[str], lines: list[int]
                  ) -> np.ndarray:
    """The row order that sorts ``times``; DataError naming the file and both lines of a repeated time
    stamp (a file holds one series, one row per time step)."""
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        i, j = order[same[0]], order[same[0] + 1]
        shown = f"'{cells[i]}'" if cells[i] == cells[j] else f"'{cells[i]}' and '{cells[j]}'"
        clock = np.issubdtype(times.dtype, np.datetime64) and any(":" in c for c in (cells[i], cells[j]))
        hint = ("; local clock times repeat an hour when daylight saving time ends: write UTC times or times "
                "with a zone offset (2000-10-29T01:30+01:00)") if clock else ""
        raise DataError(f"{path}: lines {lines[i]} and {lines[j]} have the same time stamp ({shown}) in "
                        f"column '{tname}'; a file holds one series, one row per time step: remove the "
                        f"repeated row, or give each series its own file{hint}")
    return order


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


def _check_features(path: Path, feats: list[str], header: list[str], others: list[str], tname: str | None,
                    times: np.ndarray | None) -> None:
    if not feats:
        raise DataError(f"{path}: no feature column given (--features is empty); give at least one column "
                        f"among {others}")
    missing = [f for f in feats if f not in header]
    if missing:
        raise DataError(f"{path}: no feature column(s) {missing}; the columns are {header}")
    dupes = sorted({f for f in feats if feats.count(f) > 1})
    if dupes:
        raise DataError(f"{path}: feature(s) {dupes} listed twice (--features); list each column once")
    if tname in feats:
        dates = times is not None and np.issubdtype(times.dtype, np.datetime64)
        how = ("dates are not numbers" if dates else "or, to use its numbers as an input, rename the column "
               "(a header such as date, time or timestamp marks a time column; load_csv: time_column=None)")
        raise DataError(f"{path}: '{tname}' is the time column (it orders the rows) and cannot be a feature; "
                        f"leave it out of --features: {how}")


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
            A column name forces that column; None reads rows in file order. Time steps: rows may
            come in any order (they are sorted); a repeated time stamp is an error; gaps (missing
            rows, the weekends of business-daily data) are kept, the rows stay one contiguous segment
            (:meth:`TimeSeries.segments`), as the bundled daily stock prices are read.
        source: name recorded in the series (default: the path).

    Returns:
        TimeSeries with values (n, d) in feature order, rows sorted by time.

    Raises:
        DataError: saying file, line and column, for a missing/unreadable file, an empty or ragged
            file, a missing column (listing the available ones), a non-numeric, empty or NaN cell, a
            time column with a cell that is no time stamp or with mixed formats, or a repeated time
            stamp (both lines named).
    """
    path = Path(path)
    header, body = _read_rows(path)
    lines = [line for line, _ in body]
    columns = {h: [row[j] for _, row in body] for j, h in enumerate(header)}
    if time_column not in (None, AUTO) and time_column not in columns:
        raise DataError(f"{path}: no time column '{time_column}'; the columns are {header}")
    try:
        tname, times = _find_time_column(header, columns, time_column, lines)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    others = [h for h in header if h != tname]
    if target not in columns:
        raise DataError(f"{path}: no target column '{target}'; the columns are {header}")
    if target == tname:
        raise DataError(f"{path}: the target '{target}' is the time column; forecast a numeric column "
                        f"(--target) among {others}")
    if features is None:
        feats = [h for h in others if _is_numeric_column(columns[h])]
        ignored = tuple(h for h in others if h not in feats)
        if target not in feats:
            feats.append(target)  # reported as non-numeric by _column_values below
    else:
        feats, ignored = list(features), ()
        _check_features(path, feats, header, others, tname, times)
    data = {h: _column_values(path, h, columns[h], lines) for h in dict.fromkeys([*feats, target])}
    values = np.stack([data[f] for f in feats], axis=1)
    y = data[target]
    if times is not None:
        order = _sort_by_time(path, tname, times, columns[tname], lines)
        times, values, y = times[order], values[order], y[order]
    return TimeSeries(values=values, feature_names=tuple(feats), target_name=target, target=y,
                      target_index=feats.index(target) if target in feats else None, time=times,
                      time_column=tname, source=source or str(path), ignored_columns=ignored)
