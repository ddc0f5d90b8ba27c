"""One error path for the whole CLI: every user error, unusable file or directory, bad --config file
and interruption (Ctrl-C, SIGTERM) ends with one ``rhode: error:`` line naming the options as typed,
exit status 2, no traceback; the worker processes of an interrupted run stop quietly."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_util import invoke
from test_bad_input import write_csv

from rhode import cli
from rhode.errors import ParameterError
from rhode.federated.checkpoint import Checkpoint, write_checkpoint
from rhode.federated.config import FLAGS, RunConfig


def rhode(argv: list[str], capsys) -> tuple[int, str, str]:
    """``rhode ARGV`` in this process: (exit status, stdout, stderr); the SIGTERM handler it installs
    is put back."""
    return invoke(argv)


def one_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rhode: error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


def train_args(tmp_path: Path, *extra: str, out: Path | None = None) -> list[str]:
    files = [str(tmp_path / f"h{i}.csv") for i in range(3)]
    return ["train", "--data", *files, "--target", "demand", "--out", str(out or tmp_path / "out"),
            "--preset", "test", "--quiet", "--workers", "1", *extra]


def test_no_arguments_print_the_help(capsys):
    code, out, err = rhode([], capsys)
    assert code == 0 and "Usage:" in out and "train" in out and not err
    code, out, err = rhode(["train"], capsys)
    assert code == 0 and "--iterations" in out and not err


def test_out_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = rhode(train_args(tmp_path, out=tmp_path / "afile" / "sub"), capsys)
    one_line(code, err, "--out", "afile", "not a directory")


@pytest.mark.parametrize("exc,needles", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), ("cannot write", "out", "no space", "--out")),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "OUT/parties"),
     ("cannot access", "parties", "permission denied", "another --out")),
    (NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/x/file/sub"),
     ("cannot write /x/file/sub", "not a directory")),
])
def test_os_errors_are_one_line(tmp_path, capsys, monkeypatch, exc, needles):
    out = tmp_path / "out"
    if exc.filename == "OUT/parties":
        exc.filename = str(out / "parties")

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr("rhode.federated.run.run_training", fail)
    code, _, err = rhode(train_args(tmp_path, out=out), capsys)
    one_line(code, err, *needles)


@pytest.mark.parametrize("state,needles", [
    ("nothing", ("interrupted before the first checkpoint", "run the command again")),
    ("checkpoint", ("interrupted", "checkpoint (iteration 3)", "--resume")),
])
def test_keyboard_interrupt_says_what_is_kept(tmp_path, capsys, monkeypatch, state, needles):
    out = tmp_path / "out"
    if state == "checkpoint":
        write_checkpoint(out, Checkpoint(3, "fp", {"w": [b"x"]}, {}))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rhode.federated.run.run_training", interrupted)
    code, _, err = rhode(train_args(tmp_path, out=out), capsys)
    one_line(code, err, *needles)


@pytest.mark.parametrize("text,needles", [
    (b"hidden = \xe9\n", ("--config", "not utf-8", "0xe9")),
    (b"this is = = not toml\n", ("--config", "not valid toml", "line 1")),
    (b'data = "a.csv"\n', ("invalid value for --data", 'sets data = "a.csv"', "a string",
                            "a list of csv files")),
    (b'target = "demand"\nfeatures = "temp"\n', ("features", "a list of column names")),
    (b"[model]\nhidden = '8'\n", ("--hidden", "model.hidden", "expected an integer")),
    (b"[train]\nlearning-rate = true\n", ("learning-rate", "expected a number")),
    (b"hiden = 8\n", ("unknown key hiden", "did you mean hidden")),
    (b"iterations = 2\nglobal_iterations = 3\n", ("iterations", "global_iterations", "same option")),
])
def test_config_file_errors(tmp_path, capsys, text, needles):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text)
    code, _, err = rhode(train_args(tmp_path, "--config", str(cfg)), capsys)
    one_line(code, err, *needles)


def test_config_keys_are_the_flags():
    cfg = RunConfig.from_dict({"data": ["a.csv", "b.csv"], "iterations": 3, "model": {"learning-rate": 0.5}})
    assert (cfg.global_iterations, cfg.learning_rate, cfg.data) == (3, 0.5, ("a.csv", "b.csv"))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParameterError, match="data"):
        RunConfig.from_dict({"data": "a.csv"})


@pytest.mark.parametrize("extra,needles,absent", [
    (("--iterations", "0"), ("--iterations",), "global"),
    (("--seed", "-1"), ("--seed", ">= 0"), "Traceback"),
    (("--batch", "5000"), ("--batch",), "batch_size"),
])
def test_messages_name_the_flags(tmp_path, capsys, extra, needles, absent):
    code, _, err = rhode(train_args(tmp_path, *extra), capsys)
    assert absent not in one_line(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_twenty_csv_files_name_data_not_parties(tmp_path, capsys):
    files = [str(tmp_path / f"f{i}.csv") for i in range(20)]
    code, _, err = rhode(["train", "--data", *files, "--target", "y", "--out", str(tmp_path / "o")], capsys)
    assert "--parties" not in one_line(code, err, "--data", "20 CSV files", "2 to 16")


def test_flags_table_is_the_cli():
    opts = {o: p.name for p in cli.train.params for o in p.opts}
    for field, flag in FLAGS.items():
        assert opts.get(flag) == field, (field, flag)


def test_predict_errors_are_one_line(tmp_path, capsys):
    query = write_csv(tmp_path / "q.csv")
    code, _, err = rhode(["predict", "--model", str(tmp_path / "nope"), "--data", str(query), "--out",
                          str(tmp_path / "p")], capsys)
    one_line(code, err, "nope")


# -- interrupting a real run with worker processes ---------------------------------------------------------

def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_run_stops_quietly(tmp_path, how):
    """Ctrl-C (SIGINT to the whole process group) during the first iteration, or SIGTERM to rhode
    alone after the first checkpoint: one error line saying what is kept, the workers gone."""
    for i in range(3):
        write_csv(tmp_path / f"h{i}.csv")
    out = tmp_path / "out"
    args = train_args(tmp_path, "--workers", "2", "--iterations", "3", "--hidden", "2", "--local-steps",
                      "1", "--timesteps", "2", "--momentum", "0", out=out)
    # SIGINT at its default in the child: a test run launched in the background by a non-interactive
    # shell inherits it ignored (POSIX), and rhode then rightly ignores Ctrl-C
    proc = subprocess.Popen([sys.executable, "-m", "rhode.cli", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(out / ("run.json" if how == "ctrl-c" else "checkpoint.rhode"), proc, 600)
        time.sleep(2)  # into the (next) iteration: the workers compute
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    expect = ("before the first checkpoint",) if how == "ctrl-c" else ("checkpoint (iteration", "--resume")
    one_line(proc.returncode, err, "interrupted", *expect)
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), workers
