"""Every bad input to `rhode train` ends with a non-zero exit and one line that says what to fix,
with no traceback and nothing written to --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def rhode(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rhode.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def write_csv(path: Path, rows: int = 200, columns=("date", "demand", "temp"), nan_at: int | None = None,
              text_at: int | None = None) -> Path:
    rng = np.random.default_rng(len(str(path)))
    lines = [",".join(columns)]
    for r in range(rows):
        cells = [f"2024-01-01T{r // 60 % 24:02d}:{r % 60:02d}:00" if r < 1440 else "x"]
        cells[0] = f"2024-{1 + r // 600:02d}-{1 + (r // 24) % 25:02d}T{r % 24:02d}:00:00"
        for _ in columns[1:]:
            cells.append(f"{rng.normal():.4f}")
        if nan_at == r:
            cells[1] = "NaN"
        if text_at == r:
            cells[1] = "abc"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("rhode: error:"), err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)


@pytest.fixture()
def three_csvs(tmp_path: Path) -> list[Path]:
    return [write_csv(tmp_path / f"h{i}.csv") for i in range(3)]


def args_for(files, out, *extra):
    return ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out),
            "--preset", "test", "--quiet", *extra]


def test_missing_file(tmp_path, three_csvs):
    out = tmp_path / "out"
    proc = rhode(*args_for([*three_csvs[:2], tmp_path / "nope.csv"], out), cwd=tmp_path)
    assert_one_line_error(proc, "nope.csv")
    assert not out.exists() or not any(out.iterdir())


def test_malformed_csv(tmp_path, three_csvs):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,demand,temp\n2024-01-01,1.0\n2024-01-02,2.0,3.0,4.0\n")
    out = tmp_path / "out"
    proc = rhode(*args_for([*three_csvs[:2], bad], out), cwd=tmp_path)
    assert_one_line_error(proc, "bad.csv")
    assert not out.exists() or not any(out.iterdir())


def test_missing_target(tmp_path, three_csvs):
    out = tmp_path / "out"
    proc = rhode("train", "--data", *map(str, three_csvs), "--target", "load", "--out", str(out),
                 "--preset", "test", cwd=tmp_path)
    assert_one_line_error(proc, "load", "demand")


def test_nan(tmp_path, three_csvs):
    nan = write_csv(tmp_path / "nan.csv", nan_at=17)
    proc = rhode(*args_for([*three_csvs[:2], nan], tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(proc, "nan.csv")


def test_non_numeric(tmp_path, three_csvs):
    txt = write_csv(tmp_path / "txt.csv", text_at=5)
    proc = rhode(*args_for([*three_csvs[:2], txt], tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(proc, "txt.csv", "abc")


def test_window_longer_than_data(tmp_path):
    files = [write_csv(tmp_path / f"s{i}.csv", rows=30) for i in range(3)]
    proc = rhode(*args_for(files, tmp_path / "out", "--timesteps", "40"), cwd=tmp_path)
    assert_one_line_error(proc, "rows", "timesteps")


def test_different_columns(tmp_path, three_csvs):
    other = write_csv(tmp_path / "other.csv", columns=("date", "demand", "humidity"))
    proc = rhode(*args_for([*three_csvs[:2], other], tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(proc, "column")


@pytest.mark.parametrize("flag,value,needle", [
    ("--hidden", "0", "--hidden"),
    ("--learning-rate", "-1", "--learning-rate"),
    ("--iterations", "0", "--iterations"),
    ("--test-fraction", "1.5", "--test-fraction"),
    ("--workers", "-1", "--workers"),
])
def test_invalid_values(tmp_path, three_csvs, flag, value, needle):
    proc = rhode(*args_for(three_csvs, tmp_path / "out", flag, value), cwd=tmp_path)
    assert_one_line_error(proc, needle)


def test_invalid_config_file(tmp_path, three_csvs):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[model]\ncell = 'transformer'\n")
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--config", str(cfg)), cwd=tmp_path)
    assert_one_line_error(proc, "cell", "transformer")
    cfg.write_text("hiden = 8\n")
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--config", str(cfg)), cwd=tmp_path)
    assert_one_line_error(proc, "hiden")
    cfg.write_text("this is = = not toml\n")
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--config", str(cfg)), cwd=tmp_path)
    assert_one_line_error(proc, "toml")


def test_bad_flag_values(tmp_path, three_csvs):
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--cell", "transformer"), cwd=tmp_path)
    assert_one_line_error(proc, "--cell", "transformer")
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--hidden", "many"), cwd=tmp_path)
    assert_one_line_error(proc, "--hidden", "many")


def test_single_party_refused(tmp_path, three_csvs):
    proc = rhode(*args_for(three_csvs[:1], tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(proc, "2 data holders")


def test_resume_without_run(tmp_path, three_csvs):
    proc = rhode(*args_for(three_csvs, tmp_path / "out", "--resume"), cwd=tmp_path)
    assert_one_line_error(proc, "resume")
