"""The decryption budget of a run's joint key: the flooding is sized for it, every revealed ciphertext is
counted against it (exactly, whatever reveals it), a run or a prediction past it is refused before
anything is revealed and keeps its checkpoint, and a resume continues the count.

The count is checked against an independent witness: every flooded share a data holder makes passes
through :func:`rhode.mhe.protocols.decryption.flood_share` (decryption and key switch alike), once per
ciphertext and holder, so the revealed ciphertexts are the calls divided by the number of holders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_run_dir import assert_one_line_error, rhode, train_args, write_csv

import rhode.mhe.protocols.decryption as decryption
from rhode.errors import BudgetError, CheckpointError, ParameterError
from rhode.federated.budget import LEDGER_NAME, DecryptionLedger, Reveal, budgeted, max_budget, plan_budget
from rhode.federated.checkpoint import CHECKPOINT_NAME
from rhode.federated.config import RunConfig
from rhode.federated.run import run_prediction, run_training
from rhode.mhe import preset
from rhode.mhe.collective import LocalCollective

N_HOLDERS = 2
QUERY_BATCHES = 9


class FloodWitness:
    """Counts the flooded shares made (and the standard deviation each used)."""

    def __init__(self) -> None:
        self.calls = 0
        self.sigmas: set[float] = set()
        self._orig = decryption.flood_share

    def __call__(self, context, share, ct):
        self.calls += 1
        self.sigmas.add(decryption.flood_sigma(context))
        return self._orig(context, share, ct)

    def revealed(self) -> int:
        assert self.calls % N_HOLDERS == 0, self.calls
        return self.calls // N_HOLDERS


def config(files, **kw) -> RunConfig:
    base = dict(data=tuple(map(str, files)), target="demand", preset="test", hidden=2, local_steps=1,
                max_test_windows=4, workers=1, global_iterations=2, query_batches=QUERY_BATCHES)
    return RunConfig(**{**base, **kw})


def ledger(run: Path) -> dict:
    return json.loads((run / LEDGER_NAME).read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(work dir, holders' CSVs, a trained run, a querier's CSV, the flooded-share witness of training)."""
    work = tmp_path_factory.mktemp("budget")
    files = [write_csv(work / f"h{i}.csv") for i in range(N_HOLDERS)]
    query = write_csv(work / "query.csv", rows=40)
    with pytest.MonkeyPatch.context() as mp:
        witness = FloodWitness()
        mp.setattr(decryption, "flood_share", witness)
        run_training(config(files), work / "run", progress=False)
    return work, files, work / "run", query, witness


def copy_run(trained, name: str) -> Path:
    work, _, run, _, _ = trained
    shutil.rmtree(work / name, ignore_errors=True)
    shutil.copytree(run, work / name)
    return work / name


def test_budget_sizes_the_flooding_of_real_shares():
    """sigma grows as sqrt(q) (OpenFHE's sqrt(12 q) rule), in the shares themselves: the decryption
    error of N = 3 flooded shares has standard deviation sqrt(3) * 2^-reveal_precision_bits."""
    base = preset("test")
    assert base.decryption_budget == 1
    x = np.linspace(-1, 1, base.slots)
    for q in (1, 4096):
        params = base.with_budget(q)
        assert params.flood_bits - base.flood_bits == pytest.approx(0.5 * math.log2(q))
        col = LocalCollective(params, 3, rotations=[], measure_bytes=False)
        err = col.decrypt([col.encrypt(x)])[0] - x
        want = math.sqrt(3) * 2.0**-params.reveal_precision_bits
        # 8192 real values: the sample std is within 10 % of the true one by > 9 standard errors
        assert float(np.std(err)) == pytest.approx(want, rel=0.1)
        assert float(np.max(np.abs(err))) <= params.reveal_error_bound(3)


def test_budget_plan_and_its_limits():
    plan = plan_budget(8, 3, model_ciphertexts=5, test_windows=130, windows_per_ciphertext=64)
    assert (plan.statistics, plan.loss, plan.model, plan.prediction, plan.queries) == (2, 8, 5, 3, 3)
    assert plan.total == 21 and budgeted(preset("default"), plan).decryption_budget == 21
    top = max_budget(preset("default"))
    assert preset("default").with_budget(top).reveal_precision_bits >= 8
    with pytest.raises(ParameterError, match="--iterations"):
        budgeted(preset("default"), plan_budget(top, 0))
    with pytest.raises(ParameterError, match="decryption budget"):
        preset("default").with_budget(0)


def test_budget_ledger_refuses_and_persists(tmp_path):
    led = DecryptionLedger.create(tmp_path, 5)
    led.spend(Reveal.LOSS, 4)
    with pytest.raises(BudgetError, match="1 of 5 left"):
        led.spend(Reveal.MODEL, 2)
    again = DecryptionLedger.load(tmp_path, 5)
    assert again.spent[Reveal.LOSS.value] == 4 and again.used == 4 and again.left == 1
    with pytest.raises(CheckpointError, match="does not go with"):
        DecryptionLedger.load(tmp_path, 6)
    (tmp_path / LEDGER_NAME).unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        DecryptionLedger.load(tmp_path, 5)


@pytest.mark.slow
def test_budget_count_is_exact_over_training_reveal_and_prediction(trained):
    work, _, run, query, witness = trained
    meta = json.loads((run / "run.json").read_text())
    plan, budget = meta["decryption_budget"], meta["ckks"]["decryption_budget"]
    assert budget == plan["total"] and plan["loss"] == 2 and plan["queries"] == QUERY_BATCHES
    # every flooded share of the run used the sigma of that budget
    assert witness.sigmas == {2.0 ** (preset("test").with_budget(budget).flood_bits - 59)}
    d = ledger(run)
    assert d["used"] == witness.revealed() and d["budget"] == budget
    assert d["spent"]["statistics"] == 2 and d["spent"]["loss"] == 2
    assert d["spent"]["model"] == plan["model"] and d["spent"]["prediction"] == plan["prediction"]
    report = json.loads((run / "report.json").read_text())
    assert report["decryptions"]["used"] == d["used"] and report["decryptions"]["left"] == budget - d["used"]
    # a querier's prediction afterwards: counted as what its key switch reveals
    with pytest.MonkeyPatch.context() as mp:
        w = FloodWitness()
        mp.setattr(decryption, "flood_share", w)
        pred = run_prediction(run, query, work / "pred")
    assert w.revealed() >= 1 and ledger(run)["used"] == d["used"] + w.revealed()
    assert ledger(run)["spent"]["prediction"] == d["spent"]["prediction"] + w.revealed()
    assert pred["decryptions"]["left"] == budget - ledger(run)["used"]


@pytest.mark.slow
def test_budget_exceeded_refuses_and_keeps_the_checkpoint(trained):
    work, files, _, query, _ = trained
    run = copy_run(trained, "over")
    snapshot, count = (run / CHECKPOINT_NAME).read_bytes(), ledger(run)
    proc = rhode(*train_args(files, run, "--iterations", "40", "--resume"), cwd=work)
    assert_one_line_error(proc, "decryption budget", "new run")
    assert (run / CHECKPOINT_NAME).read_bytes() == snapshot and ledger(run) == count
    # a ledger with nothing left: the prediction is refused before any share is made
    spent = {**count["spent"], "prediction": count["spent"]["prediction"] + count["left"]}
    full = {**count, "spent": spent, "used": count["budget"], "left": 0}
    (run / LEDGER_NAME).write_text(json.dumps(full))
    with pytest.MonkeyPatch.context() as mp:
        w = FloodWitness()
        mp.setattr(decryption, "flood_share", w)
        with pytest.raises(BudgetError, match="0 of"):
            run_prediction(run, query, work / "refused")
    assert w.calls == 0 and not (work / "refused").exists() and ledger(run) == full


@pytest.mark.slow
def test_budget_resume_continues_the_count(trained):
    work, files, _, _, _ = trained
    run = copy_run(trained, "more")
    before = ledger(run)
    plan = json.loads((run / "run.json").read_text())["decryption_budget"]
    with pytest.MonkeyPatch.context() as mp:
        w = FloodWitness()
        mp.setattr(decryption, "flood_share", w)
        report = run_training(config(files, global_iterations=3), run, resume=True, progress=False)
    after = ledger(run)
    assert w.revealed() == 1 + plan["model"] + plan["prediction"]  # one more loss, the model, the test
    assert after["used"] == before["used"] + w.revealed() and after["spent"]["loss"] == 3
    assert report["decryptions"]["used"] == after["used"]
