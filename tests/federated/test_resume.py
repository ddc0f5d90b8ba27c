"""A run killed during a global iteration and resumed with --resume ends with the same weights as an
uninterrupted run; a resume with other parameters is refused without touching the checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rhode.federated import codec as K
from rhode.federated.checkpoint import CHECKPOINT_NAME, read_checkpoint
from rhode.federated.config import RunConfig
from rhode.federated.engine import Federation, parties_dir
from rhode.federated.files import load_public_keys

CONFIG = """
dataset = "electricity"
max_rows = 700
hidden = 3
timesteps = 3
batch = 8
local_steps = 1
global_iterations = 3
max_test_windows = 8
preset = "test"
"""


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rhode.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"OMP_NUM_THREADS": "1"})


def decrypted_model(out: Path) -> dict[str, np.ndarray]:
    """The run's checkpoint threshold-decrypted by its data holders (their stored shares)."""
    meta = json.loads((out / "run.json").read_text())
    cfg = RunConfig.from_dict(meta["config"])
    with Federation(cfg, [None] * cfg.n_parties, parties_dir(out)) as fed:
        fed.attach(load_public_keys(out), int(meta["n_features"]))
        agg = fed.agg
        return agg.decrypt_model(K.model_from_checkpoint(agg.ctx, agg.backend, agg.model,
                                                         read_checkpoint(out).model))


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    (tmp_path / "cfg.toml").write_text(CONFIG)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = ("train", "--config", "cfg.toml", "--quiet", "--out")

    proc = cli(*args, str(killed), cwd=tmp_path)
    deadline = time.monotonic() + 600
    while not (killed / CHECKPOINT_NAME).exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # well inside global iteration 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_checkpoint(killed)
    assert before.iteration < 3  # killed mid-run, not after it finished
    assert not (killed / "report.json").exists()

    resumed = cli(*args, str(killed), "--resume", cwd=tmp_path)
    full = cli(*args, str(whole), cwd=tmp_path)
    for p in (resumed, full):
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    report = json.loads((killed / "report.json").read_text())
    assert report["resumed_from_iteration"] == before.iteration
    assert [h["iteration"] for h in report["history"]] == [1, 2, 3]

    a, b = decrypted_model(killed), decrypted_model(whole)
    for k in a:
        assert float(np.max(np.abs(a[k] - b[k]))) <= 1e-4, k


@pytest.mark.slow
def test_resume_with_other_parameters_is_refused(tmp_path):
    (tmp_path / "cfg.toml").write_text(CONFIG.replace("global_iterations = 3", "global_iterations = 1"))
    out = tmp_path / "run"
    p = cli("train", "--config", "cfg.toml", "--quiet", "--out", str(out), cwd=tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    snapshot = (out / CHECKPOINT_NAME).read_bytes()
    p = cli("train", "--config", "cfg.toml", "--quiet", "--out", str(out), "--resume", "--hidden", "4",
            cwd=tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 2
    assert err.strip().startswith("rhode: error:") and len(err.strip().splitlines()) == 1
    assert "hidden" in err and "Traceback" not in err
    assert (out / CHECKPOINT_NAME).read_bytes() == snapshot
    # a new run into a directory that holds one is refused too (nothing overwritten)
    p = cli("train", "--config", "cfg.toml", "--quiet", "--out", str(out), cwd=tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 2 and "--resume" in err
    assert (out / CHECKPOINT_NAME).read_bytes() == snapshot
