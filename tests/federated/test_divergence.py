"""A diverging encrypted run stops with one rhode error that names the learning rate, after the
iteration whose decrypted loss diverged, and leaves no checkpoint of the diverged model (the last
good one, if any, is kept). At learning rate 10 without clipping the loss explodes within the first
three iterations (which one depends on the encryption noise: the polynomials amplify it once the
inputs leave their interval; 4 local steps per iteration make it quicker), so the test allows up to
6 iterations and checks the checkpoint that goes with the one that diverged."""

from __future__ import annotations

import json
import re

import pytest

from rhode.federated.checkpoint import read_checkpoint
from rhode.federated.config import RunConfig
from rhode.federated.report import DivergenceError
from rhode.federated.run import run_training


@pytest.mark.slow
def test_diverging_run_stops_naming_the_learning_rate(tmp_path):
    cfg = RunConfig(dataset="electricity", max_rows=700, hidden=3, timesteps=3, batch=8, local_steps=4,
                    global_iterations=6, max_test_windows=8, preset="test", learning_rate=10.0, clip="none",
                    workers=1)
    out = tmp_path / "run"
    with pytest.raises(DivergenceError, match="learning rate 10 is too large") as exc:
        run_training(cfg, out, progress=False)
    message = str(exc.value)
    assert "\n" not in message
    at = int(re.search(r"diverged at global iteration (\d+)", message).group(1))
    assert 1 <= at <= cfg.global_iterations, message
    if at == 1:  # a run that stops before its first checkpoint leaves nothing behind
        assert "no checkpoint was written" in message and not out.exists()
        return
    # the diverged model never replaced the checkpoint of the iteration before
    assert read_checkpoint(out).iteration == at - 1
    assert f"checkpoint of iteration {at - 1} is kept" in message
    assert not (out / "report.json").exists()
    assert json.loads((out / "run.json").read_text())["config"]["learning_rate"] == 10.0
