"""`rhode train --data A.csv B.csv C.csv --target COL` end to end on CSV files written here (a date
column, a trend that differs between the files), and `rhode predict` on a querier's CSV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def write_holder_csv(path: Path, slope: float, phase: float, rows: int = 260, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    load = 50 + slope * t + 8 * np.sin(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.5, rows)
    temp = 15 + 5 * np.cos(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.3, rows)
    lines = ["date,temperature,load"]
    # rows written in shuffled order: the date column must be recognized and used for ordering
    for r in rng.permutation(rows):
        day, hour = divmod(int(r), 24)
        lines.append(f"2025-03-{1 + day:02d} {hour:02d}:00,{temp[r]:.3f},{load[r]:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_train_on_csv_files_end_to_end(tmp_path):
    files = [write_holder_csv(tmp_path / f"site{i}.csv", slope=s, phase=i, seed=i)
             for i, s in enumerate((0.02, -0.03, 0.05))]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rhode.cli", "train", "--data", *map(str, files),
                           "--target", "load", "--out", str(out), "--preset", "test", "--quiet",
                           "--iterations", "2"],
                          capture_output=True, text=True, timeout=1500, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["parties"] == 3
    assert report["time_column"] == "date"
    assert report["features"] == ["temperature", "load", "load_diff"]  # differenced by default
    assert "date" in proc.stdout or "date" in proc.stderr or report["time_column"] == "date"
    enc, plain = report["test_mae_encrypted"], report["test_mae_plaintext"]
    assert enc <= 1.10 * plain, (enc, plain)
    assert report["max_abs_weight_diff_vs_mirror"] <= 1e-3
    for f in ("loss.png", "predictions.png", "predictions.csv", "checkpoint.rhode"):
        assert (out / f).stat().st_size > 0
    assert oct((out / "parties" / "party-0.key").stat().st_mode & 0o777) == "0o600"

    # a querier's CSV against the trained encrypted model
    query = write_holder_csv(tmp_path / "query.csv", slope=0.01, phase=0.5, rows=40, seed=9)
    qout = tmp_path / "query"
    proc = subprocess.run([sys.executable, "-m", "rhode.cli", "predict", "--model", str(out), "--data",
                           str(query), "--out", str(qout)], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = (qout / "predictions.csv").read_text().splitlines()
    assert rows[0] == "window,prediction,truth" and len(rows) > 10
    preds = np.array([float(r.split(",")[1]) for r in rows[1:]])
    truth = np.array([float(r.split(",")[2]) for r in rows[1:]])
    # predictions are in original units and track the series (far better than predicting the mean)
    assert np.mean(np.abs(preds - truth)) < np.mean(np.abs(truth - truth.mean()))
