"""Property-based robustness of the rhode command (issue 14): damaged CSV files, odd option values and
--config files. Every case either succeeds or ends with exit status 2 and exactly one
``rhode: error:`` line on stderr, no traceback; a failing case leaves no --out behind (or leaves a
pre-existing one exactly as it was) and no case changes a file that existed before.

Cheap by construction: the generated cases run with ``--batch 4096``, which no holder of these short
files has windows for, so a case that passes every data and option check stops in the last check
before key generation (``check_holders``); where ``--batch`` itself is drawn, the files have 3 rows,
too few for any window. Only the few explicit cases at the end make keys. Hypothesis runs
derandomized (the same examples on every run) and without an example database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from _cli_util import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = ("--preset", "test", "--quiet", "--workers", "1", "--iterations", "1", "--hidden", "2",
        "--timesteps", "2", "--max-test-windows", "4")
STOP = ("--batch", "4096")  # more windows than any file here has: fails before any key is made


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


HEADER = ["date", "demand", "temp"]


# --- running the command and checking the outcome -----------------------------------------------------

def snapshot(path: Path) -> dict[str, tuple[bytes | None, int]] | None:
    """Every file and directory under ``path`` (itself included): bytes (None for a directory) and
    mode; None if ``path`` does not exist."""
    if not path.exists():
        return None
    items = [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]
    return {str(p.relative_to(path)): (None if p.is_dir() else p.read_bytes(), p.stat().st_mode)
            for p in items}


def check_outcome(argv: list[str], out: Path, kept: list[Path]) -> tuple[int, str]:
    """Run ``argv`` and check the properties; ``kept``: files and directories that existed before
    (inputs, a pre-existing --out) and must not change. Returns (exit status, stderr)."""
    before_out = snapshot(out)
    before = {p: snapshot(p) for p in kept}
    code, stdout, stderr = invoke(argv)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    assert code in (0, 2), (code, stderr)
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rhode: error: "), stderr
        assert snapshot(out) == before_out, f"a failed run changed --out {out}: {lines[0]}"
    for p, snap in before.items():
        now = snapshot(p)
        if code == 2 or p != out:
            assert now == snap, f"{p} changed"
        elif snap is not None:  # a successful run into a pre-existing --out keeps what was there
            assert all(now.get(rel, (b"",))[0] == data for rel, (data, _) in snap.items() if data is not None)
    return code, stderr


# --- the files --------------------------------------------------------------------------------------

def csv_rows(rows: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[f"2024-01-{1 + r // 24:02d}T{r % 24:02d}:00:00", f"{10 + rng.normal():.3f}",
             f"{rng.normal():.3f}"] for r in range(rows)]


GARBAGE = st.one_of(
    st.sampled_from(["", " ", "NaN", "nan", "NA", "null", "-", "?", "abc", "1e20", "-1e20", "1e300",
                     "-1e300", "1e400", "inf", "-Infinity", "1e-30", "0", "1,5", "1.2.3", "0x1F", "1_000",
                     "\uff11\uff12", "\u0663", "\u00bd", "\u00e9", "\u200b", "\u65e5\u672c", '"', '"1"', "'",
                     ",", ";", "\t", "\u2028", "\x00", "2024-13-45", "24/01/01"]),
    st.text(max_size=6),
    st.floats().map(repr),
)
OPS = ["cell", "cell", "drop_row", "dup_row", "swap_rows", "truncate", "header_rename", "header_drop",
       "header_dup", "header_add", "delimiter_file", "delimiter_line", "bom", "crlf", "empty", "blank_only",
       "not_utf8", "extra_field", "time_cell"]


def damage(data, lines: list[str], op: str) -> list[str]:
    """``lines`` (header first) after one kind of damage; ``data`` draws its details."""
    n = len(lines)
    pick = lambda lo=1: data.draw(st.integers(lo, max(lo, n - 1)))  # noqa: E731
    if op in ("cell", "time_cell", "extra_field") and n > 1:
        k = pick()
        cells = lines[k].split(",")
        j = 0 if op == "time_cell" else data.draw(st.integers(0, len(cells) - 1))
        if op == "extra_field":
            cells.insert(j, data.draw(GARBAGE))
        else:
            cells[j] = data.draw(GARBAGE)
        lines[k] = ",".join(cells)
    elif op == "drop_row" and n > 1:
        del lines[pick()]
    elif op == "dup_row" and n > 1:
        k = pick()
        lines.insert(data.draw(st.integers(1, n)), lines[k])
    elif op == "swap_rows" and n > 2:
        a, b = pick(), pick()
        lines[a], lines[b] = lines[b], lines[a]
    elif op == "truncate":
        text = "\n".join(lines)
        lines = text[:data.draw(st.integers(0, len(text)))].split("\n")
    elif op.startswith("header_"):
        cols = lines[0].split(",") if lines else []
        j = data.draw(st.integers(0, max(0, len(cols) - 1)))
        if op == "header_rename" and cols:
            cols[j] = data.draw(st.sampled_from(["", "Demand", "demand ", "temp", "time", "x", "d\u00e9m"]))
        elif op == "header_drop" and cols:
            del cols[j]
        elif op == "header_dup" and cols:
            cols.insert(j, cols[j])
        else:
            cols.append(data.draw(st.sampled_from(["extra", "demand", "", "date"])))
        lines = [",".join(cols), *lines[1:]]
    elif op == "delimiter_file":
        sep = data.draw(st.sampled_from([";", "\t", "|", " "]))
        lines = [ln.replace(",", sep) for ln in lines]
    elif op == "delimiter_line" and n > 0:
        k = data.draw(st.integers(0, n - 1))
        lines[k] = lines[k].replace(",", data.draw(st.sampled_from([";", "\t"])))
    elif op == "bom" and n > 0:
        lines[0] = "\ufeff" + lines[0]
    elif op == "crlf":
        lines = [ln + "\r" for ln in lines]
    elif op == "empty":
        lines = []
    elif op == "blank_only":
        lines = ["", "  ", ""]
    return lines


def write_files(directory: Path, data, rows: int, damaged: bool) -> list[Path]:
    files = []
    for i in range(3):
        lines = [",".join(HEADER)] + [",".join(r) for r in csv_rows(rows, i)]
        raw = None
        if damaged and data.draw(st.booleans(), label=f"damage holder {i}"):
            for op in data.draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=3), label="damage"):
                if op == "not_utf8":
                    bad = data.draw(st.sampled_from([b"\xff\xfe", b"\xc3("]))
                    raw = ("\n".join(lines) + "\n").encode() + bad
                else:
                    lines = damage(data, lines, op)
        path = directory / f"h{i}.csv"
        path.write_bytes(raw if raw is not None else ("\n".join(lines) + "\n").encode())
        files.append(path)
    return files


def make_out(directory: Path, kind: str) -> Path:
    """An --out of the given kind: new, nested (parents missing), empty (exists), foreign (holds
    files rhode did not write, one named as a file rhode writes), file (an existing file)."""
    if kind == "nested":
        return directory / "a" / "b" / "run"
    out = directory / "run"
    if kind in ("empty", "foreign"):
        out.mkdir()
    if kind == "foreign":
        (out / "notes.txt").write_text("mine\n")
        (out / "report.json").write_text('{"not": "rhode\'s"}\n')
    if kind == "file":
        out.write_text("a file, not a directory\n")
    return out


OUT_KINDS = st.sampled_from(["new", "new", "nested", "empty", "foreign", "foreign", "file"])


# --- the properties ---------------------------------------------------------------------------------

@fuzz(150)
@given(data=st.data(), out_kind=OUT_KINDS)
def test_damaged_csv_files(data, out_kind):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = write_files(d, data, rows=24, damaged=True)
        out = make_out(d, out_kind)
        argv = ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out), *BASE, *STOP]
        check_outcome(argv, out, [*files, out])


INT_FLAGS = ["--hidden", "--timesteps", "--horizon", "--batch", "--iterations", "--local-steps",
             "--max-test-windows", "--seed", "--lr-decay-every", "--workers"]
FLOAT_FLAGS = ["--learning-rate", "--momentum", "--test-fraction", "--clip-value", "--lr-decay"]
CHOICES = {"--cell": ["rnn", "gru", "lstm"], "--clip": ["none", "poly", "tanh", "abs"],
           "--preset": ["test", "default", "deep"], "--partition": ["iid", "blocks", "skew"]}
INT_VALUES = st.one_of(st.integers(-3, 6), st.integers(-2**70, 2**70),
                       st.sampled_from(["abc", "1.5", "1e3", "", " 3", "0x10", "\u0663", "-0", "+2", "2_0",
                                        "nan", "99999999999999999999"])).map(str)
FLOAT_VALUES = st.one_of(st.floats(), st.floats(-0.5, 1.5),
                         st.sampled_from(["abc", "1e400", "-0.0", "nan", "inf", "", "0", "1", "0.5",
                                          "10.0001", "1,5", "1e-320"])).map(str)


@st.composite
def option_values(draw, dataset: bool) -> list[str]:
    flags = INT_FLAGS + FLOAT_FLAGS + list(CHOICES) + ["--difference", "--no-difference", "--nesterov"]
    if dataset:
        flags = [f for f in flags if f != "--batch"] + ["--parties"]
    else:
        flags.remove("--partition")
    args: list[str] = []
    for flag in draw(st.lists(st.sampled_from(flags), min_size=1, max_size=4, unique=True)):
        if flag in ("--difference", "--no-difference", "--nesterov"):
            args.append(flag)
            continue
        if flag in CHOICES:
            value = draw(st.sampled_from([*CHOICES[flag], "", "RNN", "transformer", "\uff52\uff4e\uff4e"]))
        else:
            value = draw(FLOAT_VALUES if flag in FLOAT_FLAGS else INT_VALUES)
        args += [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]
    return args


@fuzz(150)
@given(data=st.data(), out_kind=OUT_KINDS)
def test_option_values(data, out_kind):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dataset = data.draw(st.booleans(), label="bundled dataset")
        options = data.draw(option_values(dataset), label="options")
        out = make_out(d, out_kind)
        if dataset:
            source, kept = ["--dataset", "electricity"], [out]
        else:
            # --batch drawn: 3-row files, too few for any window whatever the other options say
            files = write_files(d, data, rows=3 if "--batch" in " ".join(options) else 24, damaged=False)
            source, kept = ["--data", *map(str, files), "--target", "demand"], [*files, out]
        check_outcome(["train", *source, "--out", str(out), *BASE, *options, *STOP], out, kept)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else {float("inf"): "inf", float("-inf"): "-inf"}.get(v, repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


KEYS = ["hidden", "timesteps", "iterations", "learning-rate", "learning_rate", "momentum", "cell", "clip",
        "preset", "seed", "data", "dataset", "target", "features", "batch", "test-fraction", "workers",
        "global_iterations", "nonsense", "max_rows", "extra"]
SCALARS = st.one_of(st.integers(-3, 20), st.floats(), st.booleans(), st.text(max_size=5))
TOML = st.dictionaries(st.sampled_from(KEYS), st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
                       max_size=4).map(lambda d: "".join(f"{k} = {toml_value(v)}\n" for k, v in d.items()))


@fuzz(80)
@given(data=st.data(), text=st.one_of(TOML, st.text(max_size=40)),
       raw=st.one_of(st.none(), st.binary(max_size=20)))
def test_config_files(data, text, raw):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = write_files(d, data, rows=24, damaged=False)
        cfg = d / "run.toml"
        cfg.write_bytes(raw if raw is not None else text.encode())
        out = make_out(d, "new")
        argv = ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out), "--config",
                str(cfg), *BASE, *STOP]
        check_outcome(argv, out, [*files, cfg, out])


@pytest.mark.parametrize("source", ["csv", "dataset"])
def test_a_vanishing_test_fraction(tmp_path, source):
    """--test-fraction 1e-320 is in (0, 1) but the rows it asks for overflow (found by the fuzzing)."""
    out = tmp_path / "run"
    if source == "csv":
        files = [tmp_path / f"h{i}.csv" for i in range(3)]
        for i, f in enumerate(files):
            f.write_text("\n".join([",".join(HEADER)] + [",".join(r) for r in csv_rows(24, i)]) + "\n")
        args = ["--data", *map(str, files), "--target", "demand"]
    else:
        files, args = [], ["--dataset", "electricity"]
    code, err = check_outcome(["train", *args, "--out", str(out), *BASE, "--test-fraction", "1e-320", *STOP],
                              out, files)
    assert code == 2 and "--test-fraction" in err, err


# --- a few cases that make keys ---------------------------------------------------------------------

def spiky_files(directory: Path, cell: str, columns: list[str]) -> list[Path]:
    files = []
    for i in range(3):
        rows = [r[:len(columns)] for r in csv_rows(40, i)]
        if i == 1:
            rows[10][1] = cell
        files.append(directory / f"s{i}.csv")
        files[-1].write_text("\n".join([",".join(columns)] + [",".join(r) for r in rows]) + "\n")
    return files


@pytest.mark.parametrize("cell", ["1e20", "-1e300"])
def test_values_the_encrypted_statistics_cannot_take(tmp_path, cell):
    """A cell of 1e20 among values near 10 in a file's only column: the other holders' pre-scaled
    sums are below what the CKKS encoder takes; -1e300: its square is not finite."""
    files = spiky_files(tmp_path, cell, ["date", "demand"])
    out = tmp_path / "run"
    argv = ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out), *BASE]
    code, err = check_outcome(argv, out, files)
    assert code == 2 and "s1.csv" in err and "'demand" in err, err


@pytest.mark.slow
def test_benign_damage_trains(tmp_path):
    """What the reader takes in its stride (BOM, CRLF, semicolons, rows out of order, a huge value
    next to an ordinary column) trains, into an --out that exists and is empty; the inputs and a file
    beside --out stay as they were."""
    files = spiky_files(tmp_path, "1e20", HEADER)
    text = files[0].read_text().splitlines()
    files[0].write_bytes(("\ufeff" + "\r\n".join([text[0], *reversed(text[1:])]) + "\r\n").encode())
    files[2].write_text(files[2].read_text().replace(",", ";"))
    out = make_out(tmp_path, "empty")
    beside = tmp_path / "report.json"
    beside.write_text("not rhode's\n")
    argv = ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out), *BASE]
    code, err = check_outcome(argv, out, [*files, beside, out])
    assert code == 0, err
    assert (out / "checkpoint.rhode").is_file() and (out / "report.json").is_file()
