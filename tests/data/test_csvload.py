"""load_csv: parsing, time columns, and the error messages for each kind of bad file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rhode.data import TimeSeries, check_compatible, load_csv
from rhode.errors import DataError, RhodeError


def write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_sorts_by_time_and_keeps_target_as_feature(tmp_path):
    p = write(tmp_path, "date,load,temp,city\n2020-01-03,3.0,30,x\n2020-01-01,1.0,10,x\n"
                        "2020-01-02,2.0,20,y\n")
    s = load_csv(p, target="load")
    assert isinstance(s, TimeSeries)
    assert s.feature_names == ("load", "temp")
    assert s.ignored_columns == ("city",)
    assert s.time_column == "date" and s.target_index == 0 and s.target_is_feature
    np.testing.assert_array_equal(s.values, [[1, 10], [2, 20], [3, 30]])
    np.testing.assert_array_equal(s.target, [1, 2, 3])
    assert s.time.dtype == np.dtype("datetime64[s]")
    assert str(s.time[0]) == "2020-01-01T00:00:00"
    assert "sorted by time column 'date'" in s.describe() and "autoregressive" in s.describe()


def test_explicit_features_without_target(tmp_path):
    p = write(tmp_path, "time;y;a;b\n2;6;3;4\n1;5;1;2\n")  # semicolons, numeric time column
    s = load_csv(p, target="y", features=["b", "a"])
    assert s.feature_names == ("b", "a") and s.target_index is None and not s.target_is_feature
    np.testing.assert_array_equal(s.values, [[2, 1], [4, 3]])
    np.testing.assert_array_equal(s.target, [5, 6])
    assert s.time_column == "time" and s.stat_columns == ("b", "a", "y")


@pytest.mark.parametrize("stamp_a, stamp_b", [
    ("2000-06-05 00:30", "2000-06-05 00:00"),
    ("2000-06-05T00:30:00Z", "2000-06-05T01:00:00+01:00"),  # 00:30 UTC, then 00:00 UTC
    ("05/06/2000", "04/06/2000"),                           # day first when ambiguous
    ("2000/06/05", "2000/06/04"),
    ("13.06.2000", "12.06.2000"),
    ("05-Jun-2000", "04-Jun-2000"),
])
def test_time_formats_are_recognized_without_time_header(tmp_path, stamp_a, stamp_b):
    p = write(tmp_path, f"when,v\n{stamp_a},2\n{stamp_b},1\n")
    s = load_csv(p, target="v")
    assert s.time_column == "when" and s.feature_names == ("v",)
    np.testing.assert_array_equal(s.target, [1, 2])
    assert s.time[0] < s.time[1]


def test_time_column_none_keeps_file_order_and_forced_column(tmp_path):
    p = write(tmp_path, "idx,v\n3,30\n1,10\n2,20\n")
    s = load_csv(p, target="v")
    assert s.time_column is None and s.feature_names == ("idx", "v")
    np.testing.assert_array_equal(s.target, [30, 10, 20])
    s = load_csv(p, target="v", time_column="idx")
    np.testing.assert_array_equal(s.target, [10, 20, 30])
    q = write(tmp_path, "date,v\n2,1\n1,2\n", "n.csv")
    assert load_csv(q, target="v", time_column=None).feature_names == ("date", "v")


def test_blank_lines_and_bom_are_tolerated(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes("\ufeffx,y\n1,2\n\n3,4\n\n".encode())
    s = load_csv(p, target="y")
    assert s.feature_names == ("x", "y") and s.n_rows == 2


# --- errors: type and a message that says what to fix -------------------------------------------

def expect(match: str, fn, *args, **kw) -> str:
    with pytest.raises(DataError, match=match) as e:
        fn(*args, **kw)
    assert isinstance(e.value, RhodeError)
    return str(e.value)


def test_missing_file(tmp_path):
    msg = expect("file not found", load_csv, tmp_path / "nope.csv", target="y")
    assert "nope.csv" in msg and "check the path" in msg


def test_directory_and_unreadable(tmp_path):
    expect("is a directory", load_csv, tmp_path, target="y")
    p = write(tmp_path, "x,y\n1,2\n")
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):  # running as root: permissions do not apply; use invalid UTF-8 instead
            p.chmod(0o600)
            p.write_bytes(b"x,y\n\xff\xfe,2\n")
            expect("not UTF-8", load_csv, p, target="y")
        else:
            expect("cannot be read", load_csv, p, target="y")
    finally:
        p.chmod(0o600)


def test_empty_and_header_only(tmp_path):
    expect("the file is empty", load_csv, write(tmp_path, "\n\n"), target="y")
    expect("no values, only delimiters or blank lines", load_csv, write(tmp_path, ",\n  \n,,\n"), target="y")
    msg = expect("no data rows", load_csv, write(tmp_path, "x,y\n", "h.csv"), target="y")
    assert "h.csv" in msg


def test_ragged_row_names_line(tmp_path):
    msg = expect("line 3 has 3 fields but the header has 2", load_csv,
                 write(tmp_path, "x,y\n1,2\n3,4,5\n"), target="y")
    assert "d.csv" in msg


def test_header_problems(tmp_path):
    expect("duplicate column names", load_csv, write(tmp_path, "x,x\n1,2\n"), target="x")
    expect("empty column name", load_csv, write(tmp_path, "x,\n1,2\n"), target="x")


def test_missing_target_lists_columns(tmp_path):
    msg = expect("no target column 'load'", load_csv, write(tmp_path, "date,demand,temp\n2020-01-01,1,2\n"),
                 target="load")
    assert "['date', 'demand', 'temp']" in msg


def test_missing_feature_lists_columns(tmp_path):
    p = write(tmp_path, "date,demand,temp\n2020-01-01,1,2\n")
    msg = expect(r"no feature column\(s\) \['tmp'\]", load_csv, p, target="demand", features=["tmp"])
    assert "['date', 'demand', 'temp']" in msg
    expect("listed twice", load_csv, p, target="demand", features=["temp", "temp"])
    expect(r"no feature column given \(--features is empty\)", load_csv, p, target="demand", features=[])
    msg = expect("time column .* cannot be a feature", load_csv, p, target="demand", features=["date"])
    assert "leave it out of --features: dates are not numbers" in msg
    msg = expect("target 'date' is the time column", load_csv, p, target="date")
    assert "--target" in msg
    q = write(tmp_path, "time,demand\n2,1\n1,2\n", "hours.csv")
    msg = expect("'time' is the time column", load_csv, q, target="demand", features=["time", "demand"])
    assert "rename the column" in msg and "time_column=None" in msg


def test_non_numeric_value_names_line_and_column(tmp_path):
    p = write(tmp_path, "date,demand\n2020-01-01,1\n2020-01-02,2\n2020-01-03,x7\n")
    msg = expect("line 4, column 'demand' holds 'x7', which is not a number", load_csv, p, target="demand")
    assert "d.csv" in msg


def test_text_target_is_reported(tmp_path):
    p = write(tmp_path, "v,label\n1,a\n2,b\n")
    expect("line 2, column 'label' holds 'a'", load_csv, p, target="label")


@pytest.mark.parametrize("cell", ["", "NaN", "NA", "null"])
def test_empty_or_nan_cell(tmp_path, cell):
    p = write(tmp_path, f"date,demand,temp\n2020-01-01,1,2\n2020-01-02,{cell},3\n")
    expect("line 3, column 'demand' is empty or NaN", load_csv, p, target="demand")


def test_infinite_cell(tmp_path):
    expect("line 2, column 'y' is infinite", load_csv, write(tmp_path, "y\ninf\n"), target="y")


def test_duplicate_time_stamps(tmp_path):
    p = write(tmp_path, "date,y\n2020-01-01,1\n2020-01-02,2\n2020-01-01,3\n")
    msg = expect("lines 2 and 4 have the same time stamp \\('2020-01-01'\\) in column 'date'", load_csv, p,
                 target="y")
    assert "d.csv" in msg and "remove the repeated row" in msg and "daylight" not in msg


def test_duplicate_time_stamps_written_differently(tmp_path):
    # the same instant twice: once in UTC, once with a zone offset; a repeated local hour hints at DST
    p = write(tmp_path, "time,y\n2000-10-29T00:30Z,1\n2000-10-29T00:00Z,0\n2000-10-29T01:30+01:00,2\n")
    msg = expect("lines 2 and 4 have the same time stamp \\('2000-10-29T00:30Z' and "
                 "'2000-10-29T01:30\\+01:00'\\)", load_csv, p, target="y")
    assert "daylight saving" in msg and "zone offset" in msg
    q = write(tmp_path, "hour,y\n1,1\n2,2\n2,3\n", "h.csv")  # a numeric time column
    expect("h.csv: lines 3 and 4 have the same time stamp \\('2'\\) in column 'hour'", load_csv, q,
           target="y", time_column="hour")


def test_rows_out_of_order_are_sorted_and_gaps_kept(tmp_path):
    # rows in any order are sorted by time; a gap (2020-01-04 missing) keeps the rows one segment,
    # as business-daily data with its weekends is read
    p = write(tmp_path, "date,y\n2020-01-05,5\n2020-01-01,1\n2020-01-03,3\n2020-01-02,2\n")
    s = load_csv(p, target="y")
    np.testing.assert_array_equal(s.target, [1, 2, 3, 5])
    assert s.segments() == [(0, 4)]


def test_bad_time_column(tmp_path):
    p = write(tmp_path, "date,y\n2020-01-01,1\nyesterday,2\n")
    msg = expect("line 3: column 'date' looks like a time column but holds 'yesterday'", load_csv, p,
                 target="y")
    assert "d.csv" in msg and "ISO 8601" in msg and "rename it" in msg and "time_column=None" in msg
    expect("no time column 'when'", load_csv, p, target="y", time_column="when")


@pytest.mark.parametrize("cell", ["", "NaN", "inf", "-"])
def test_time_column_without_a_stamp(tmp_path, cell):
    p = write(tmp_path, f"date,y\n2020-01-01,1\n{cell},2\n2020-01-03,3\n")
    expect(f"d.csv: line 3: the time column 'date' has no time stamp \\('{cell}'\\); fill it in", load_csv,
           p, target="y")
    q = write(tmp_path, f"time,y\n1,1\n2,2\n{cell},3\n", "n.csv")  # a numeric time column
    expect("n.csv: line 4: the time column 'time' has no time stamp", load_csv, q, target="y")


def test_time_column_mixing_formats(tmp_path):
    p = write(tmp_path, "date,y\n2020-01-01,1\n2020-01-02,2\n03/01/2020,3\n")
    msg = expect("lines 2 and 4: the time column 'date' mixes formats \\('2020-01-01', '03/01/2020'\\)",
                 load_csv, p, target="y")
    assert "the same way" in msg


def test_check_compatible(tmp_path):
    a = load_csv(write(tmp_path, "date,x,y\n2020-01-01,1,2\n", "a.csv"), target="y")
    b = load_csv(write(tmp_path, "date,y,z\n2020-01-01,1,2\n", "b.csv"), target="y")
    c = load_csv(write(tmp_path, "date,y,x\n2020-01-01,1,2\n", "c.csv"), target="y")
    d = load_csv(write(tmp_path, "date,x,y\n2020-01-01,1,2\n", "d.csv"), target="x")
    check_compatible([a, a])
    msg = expect("party 1", check_compatible, [a, b])
    assert "missing ['x'], extra ['z']" in msg and "b.csv" in msg
    expect("different order", check_compatible, [a, c])
    expect("forecasts 'x'", check_compatible, [a, d])
    expect("no data holders", check_compatible, [])
