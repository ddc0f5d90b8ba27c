"""`--difference/--no-difference` reaches the run configuration (flag, TOML, default on), and a
diverged training ends with one `rhode: error:` line that names the learning rate (run_training
replaced by a stand-in: no encryption here)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import rhode.federated.run as run_module
from rhode.cli import main, run
from rhode.errors import RhodeError
from rhode.federated.report import DivergenceError, check_divergence


@pytest.fixture
def seen(monkeypatch):
    """The RunConfig each `rhode` call would have trained with."""
    configs = []

    def fake_run_training(cfg, out, *, resume=False, progress=True):
        configs.append(cfg)
        return {}

    monkeypatch.setattr(run_module, "run_training", fake_run_training)
    monkeypatch.setattr(run_module, "summary", lambda report: "ok")
    return configs


@pytest.mark.parametrize("args, want",
                         [((), True), (("--difference",), True), (("--no-difference",), False)])
def test_flag_sets_difference(seen, tmp_path, args, want):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 0, result.output
    assert seen[-1].difference is want
    result = CliRunner().invoke(main, ["train", "--dataset", "stocks", "--out", str(tmp_path / "t"), *args])
    assert result.exit_code == 0, result.output
    assert seen[-1].difference is want and seen[-1].dataset == "stocks"


def test_toml_sets_difference_and_flag_overrides_it(seen, tmp_path):
    (tmp_path / "c.toml").write_text("difference = true\n")
    CliRunner().invoke(main, ["demo", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")])
    assert seen[-1].difference is True
    CliRunner().invoke(main, ["demo", "--config", str(tmp_path / "c.toml"), "--no-difference",
                              "--out", str(tmp_path / "p")])
    assert seen[-1].difference is False
    (tmp_path / "bad.toml").write_text('difference = "yes"\n')
    bad = ["demo", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "q")]
    result = CliRunner().invoke(main, bad)
    assert result.exit_code == 2 and "invalid value for --difference" in result.output


def test_divergence_is_one_error_line(monkeypatch, tmp_path, capsys):
    def diverging(cfg, out, *, resume=False, progress=True):
        check_divergence([{"iteration": 1, "loss_encrypted": 0.04},
                          {"iteration": 2, "loss_encrypted": float("nan")}], cfg.learning_rate)

    monkeypatch.setattr(run_module, "run_training", diverging)
    with pytest.raises(SystemExit) as e:
        run(["demo", "--learning-rate", "2.5", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("rhode: error: training diverged at global iteration 2")
    assert "learning rate 2.5 is too large" in err and "the checkpoint of iteration 1 is kept" in err
    assert issubclass(DivergenceError, RhodeError)
