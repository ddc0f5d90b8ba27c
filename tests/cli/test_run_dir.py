"""What `rhode train/predict` leave in their --out, as a user sees it: nothing half-written (a run that
stops before its first checkpoint removes what it wrote, stale temporary files are cleared), no file
rhode did not write is replaced, a resume refuses fewer iterations and changed data, run.json must go
with its checkpoint, and everything holding decrypted values or secrets is private whatever the
umask. One small encrypted run (2 CSV holders, test preset, 2 global iterations) serves every test."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rhode.federated.run as run_module
from rhode.cli import run as cli_run
from rhode.federated.checkpoint import CHECKPOINT_NAME, read_checkpoint


def write_csv(path: Path, rows: int = 200) -> Path:
    """A holder's CSV: an hourly date column, the target 'demand' and a feature 'temp'."""
    rng = np.random.default_rng(len(str(path)))
    lines = ["date,demand,temp"] + [
        f"2024-{1 + r // 600:02d}-{1 + (r // 24) % 25:02d}T{r % 24:02d}:00:00,{rng.normal():.4f},"
        f"{rng.normal():.4f}" for r in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("rhode: error:"), err
    for needle in needles:
        assert needle.lower() in err.lower(), (needle, err)

SMALL = ("--preset", "test", "--quiet", "--hidden", "2", "--local-steps", "1", "--max-test-windows", "4",
         "--workers", "1")


def rhode(*args: str, cwd: Path, umask: int = -1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rhode.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, umask=umask, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def train_args(files, out, *extra):
    return ["train", "--data", *map(str, files), "--target", "demand", "--out", str(out), *SMALL, *extra]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(work dir, the holders' CSVs, a trained run of 2 global iterations, a querier's CSV), made with
    umask 0."""
    work = tmp_path_factory.mktemp("runs")
    files = [write_csv(work / f"h{i}.csv") for i in range(2)]
    query = write_csv(work / "query.csv", rows=40)
    proc = rhode(*train_args(files, work / "run", "--iterations", "2"), cwd=work, umask=0)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work, files, work / "run", query


def copy_run(trained, name: str) -> Path:
    work, _, run, _ = trained
    shutil.rmtree(work / name, ignore_errors=True)
    shutil.copytree(run, work / name)
    return work / name


@pytest.mark.slow
def test_private_modes_whatever_the_umask(trained):
    work, _, run, query = trained
    assert mode(run) == 0o700 and mode(run / "parties") == 0o700
    files = [p for p in run.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"run.json", "report.json", "predictions.csv", "loss.png", "predictions.png", CHECKPOINT_NAME,
            "party-0.key", "party-1.digest"} <= names
    assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
    assert not [n for n in names if n.startswith(".tmp-")]
    out = work / "pred" / "deeper"
    proc = rhode("predict", "--model", str(run), "--data", str(query), "--out", str(out), cwd=work, umask=0)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert mode(out) == 0o700
    written = [p for p in out.iterdir()]
    assert {p.name for p in written} == {"predict.json", "report.json", "predictions.csv", "predictions.png"}
    assert all(mode(p) == 0o600 for p in written)
    # predict may replace its own earlier output
    proc = rhode("predict", "--model", str(run), "--data", str(query), "--out", str(out), cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("fault", [KeyboardInterrupt, RuntimeError])
def test_stop_before_first_checkpoint_leaves_nothing(trained, monkeypatch, capsys, fault):
    """A failure after the key generation, before the first checkpoint, removes keys, parties/ and
    run.json (and the directory it made); a pre-existing empty --out with a killed run's temporary file
    and the remains of a key generation is left empty."""
    work, files, _, _ = trained

    def boom(*args, **kwargs):
        assert (out / "run.json").exists() and (out / "parties" / "party-0.key").exists()
        raise fault("injected")

    monkeypatch.setattr(run_module, "plain_fedavg", boom)
    out = work / f"new-{fault.__name__}" / "run"
    with pytest.raises((SystemExit, RuntimeError)):
        cli_run(train_args(files, out))
    assert not out.parent.exists() or not any(out.parent.iterdir())
    kept = work / f"kept-{fault.__name__}"
    (kept / "parties").mkdir(parents=True)
    (kept / ".tmp-run.json-x1y2").write_text("{")
    (kept / "context.rhode").write_bytes(b"old")
    (kept / "parties" / "party-0.key").write_bytes(b"old")
    out = kept
    with pytest.raises((SystemExit, RuntimeError)):
        cli_run(train_args(files, kept))
    assert kept.is_dir() and list(kept.iterdir()) == []
    capsys.readouterr()


def test_checks_before_any_key(tmp_path):
    """A batch larger than a holder's windows is refused before anything is written."""
    files = [write_csv(tmp_path / f"h{i}.csv") for i in range(2)]
    out = tmp_path / "out"
    proc = rhode(*train_args(files, out, "--batch", "400"), cwd=tmp_path)
    assert_one_line_error(proc, "training windows", "batch")
    assert not out.exists()


def test_refuses_an_out_that_is_not_a_run(tmp_path):
    files = [write_csv(tmp_path / f"h{i}.csv") for i in range(2)]
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for command in (train_args(files, out), ["demo", "--out", str(out), *SMALL]):
        proc = rhode(*command, cwd=tmp_path)
        assert_one_line_error(proc, "notes.txt", "another --out")
        assert listing(out) == {"notes.txt": b"keep me"}
    proc = rhode(*train_args(files, out / "notes.txt"), cwd=tmp_path)
    assert_one_line_error(proc, "notes.txt")


@pytest.mark.slow
def test_predict_never_writes_over_a_run_or_foreign_files(trained):
    work, _, run, query = trained
    before = listing(run)
    other = copy_run(trained, "other-run")
    for out in (run, other):
        proc = rhode("predict", "--model", str(run), "--data", str(query), "--out", str(out), cwd=work)
        assert_one_line_error(proc, "training run", "another --out")
    assert listing(run) == before
    mine = work / "mine"
    mine.mkdir(exist_ok=True)
    (mine / "report.json").write_text("my own report")
    proc = rhode("predict", "--model", str(run), "--data", str(query), "--out", str(mine), cwd=work)
    assert_one_line_error(proc, "report.json", "not written by rhode predict")
    assert listing(mine) == {"report.json": b"my own report"}


@pytest.mark.slow
def test_resume_refuses_fewer_iterations_and_regenerates_at_equal(trained):
    work, files, _, _ = trained
    run = copy_run(trained, "resume-equal")
    snapshot = (run / CHECKPOINT_NAME).read_bytes()
    proc = rhode(*train_args(files, run, "--iterations", "1", "--resume"), cwd=work)
    assert_one_line_error(proc, "--iterations", "completed 2")
    assert (run / CHECKPOINT_NAME).read_bytes() == snapshot
    (run / f".tmp-{CHECKPOINT_NAME}-stale").write_bytes(b"half")  # a killed process's temporary file
    proc = rhode(*train_args(files, run, "--iterations", "2", "--resume"), cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "this process only: since iteration 2" in proc.stdout
    report = json.loads((run / "report.json").read_text())
    assert report["global_iterations"] == 2 and len(report["history"]) == 2
    assert report["resumed_from_iteration"] == 2 and report["counted_since_iteration"] == 2
    assert "bytes_sent_per_party" in report["counted_in_this_process_only"]
    assert report["seconds_key_generation"] is None and report["seconds_loading_keys"] > 0
    assert not (run / f".tmp-{CHECKPOINT_NAME}-stale").exists()
    assert read_checkpoint(run).iteration == 2


@pytest.mark.slow
def test_resume_refuses_changed_data(trained):
    work, files, run, _ = trained
    snapshot = (run / CHECKPOINT_NAME).read_bytes()
    original = files[1].read_text()
    lines = original.splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",9.9999"
    try:
        files[1].write_text("\n".join(lines) + "\n")
        proc = rhode(*train_args(files, run, "--iterations", "3", "--resume"), cwd=work)
    finally:
        files[1].write_text(original)
    assert_one_line_error(proc, "h1.csv", "changed")
    assert (run / CHECKPOINT_NAME).read_bytes() == snapshot
    assert json.loads((run / "parties" / "party-1.digest").read_text())["sha256"]
    assert "sha256" not in (run / "run.json").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["hidden", "stats"])
def test_edited_run_json_is_refused(trained, edit):
    work, files, _, query = trained
    run = copy_run(trained, f"edited-{edit}")
    meta = json.loads((run / "run.json").read_text())
    if edit == "hidden":
        meta["config"]["hidden"] = 3
    else:
        meta["global_stats"]["sum"][0] += 1.0
    (run / "run.json").write_text(json.dumps(meta, indent=2))
    proc = rhode("predict", "--model", str(run), "--data", str(query), "--out", str(work / f"p-{edit}"),
                 cwd=work)
    assert_one_line_error(proc, "run.json")
    assert not (work / f"p-{edit}").exists()
    proc = rhode(*train_args(files, run, "--iterations", "3", "--resume"), cwd=work)
    assert_one_line_error(proc, "run.json")


@pytest.mark.slow
@pytest.mark.parametrize("text", ["{}", "not json", "drop global_stats"])
def test_damaged_run_json_names_the_file(trained, text):
    work, files, _, query = trained
    run = copy_run(trained, "damaged")
    if text == "drop global_stats":
        meta = json.loads((run / "run.json").read_text())
        del meta["global_stats"]
        text = json.dumps(meta)
    (run / "run.json").write_text(text)
    for command in (["predict", "--model", str(run), "--data", str(query), "--out", str(work / "pd")],
                    train_args(files, run, "--resume")):
        proc = rhode(*command, cwd=work)
        assert_one_line_error(proc, str(run / "run.json"))
        assert "KeyError" not in proc.stderr
    assert not os.path.exists(work / "pd")


def test_predict_without_a_run_names_model_not_resume(tmp_path):
    (tmp_path / "empty").mkdir()
    query = write_csv(tmp_path / "query.csv", rows=40)
    proc = rhode("predict", "--model", str(tmp_path / "empty"), "--data", str(query), "--out",
                 str(tmp_path / "p"), cwd=tmp_path)
    assert_one_line_error(proc, "--model must be the --out directory")
    assert "--resume" not in proc.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_resume_names_a_missing_secret_share(trained):
    work, files, _, _ = trained
    run = copy_run(trained, "no-share")
    (run / "parties" / "party-1.key").unlink()
    proc = rhode(*train_args(files, run, "--iterations", "3", "--resume"), cwd=work)
    assert_one_line_error(proc, "data holder 1 has no secret share", "party-1.key is missing")
    assert read_checkpoint(run).iteration == 2  # the checkpoint is kept
