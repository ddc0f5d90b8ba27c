"""The ``rhode`` command: ``rhode demo``, ``rhode train``, ``rhode predict``.

Every user error ends with a one-line ``rhode: error: ...`` message and exit status 2; no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from rhode.errors import RhodeError

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Options shared by `demo` and `train`: (flag, RunConfig field, click type, help).
_RUN_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--cell", "cell", click.Choice(["rnn", "gru", "lstm"]), "recurrent cell"),
    ("--hidden", "hidden", int, "hidden units h"),
    ("--timesteps", "timesteps", int, "timesteps T per window"),
    ("--horizon", "horizon", int, "forecast horizon (steps after the window)"),
    ("--difference/--no-difference", "difference", bool,
     "forecast the target's change: its first difference is an input, the forecast is the last value "
     "plus the predicted change (default: on; docs/recipe.md)"),
    ("--batch", "batch", int,
     "mini-batch size b (default 0 = auto: the samples one ciphertext holds for this model and preset, "
     "at most every holder's training windows)"),
    ("--learning-rate", "learning_rate", float, "SGD learning rate"),
    ("--local-steps", "local_steps", int, "local mini-batch steps m per global iteration"),
    ("--iterations", "global_iterations", int, "global iterations G"),
    ("--momentum", "momentum", float,
     "heavy-ball momentum mu in [0, 1) (0: plain SGD); every data holder has its own velocity"),
    ("--nesterov/--no-nesterov", "nesterov", bool, "Nesterov momentum (needs --momentum > 0)"),
    ("--lr-decay", "lr_decay", float,
     "step decay: the learning rate is multiplied by this every --lr-decay-every global iterations"),
    ("--lr-decay-every", "lr_decay_every", int, "global iterations between two learning-rate decays"),
    ("--clip", "clip", click.Choice(["none", "poly", "tanh", "abs"]), "clip-by-value approximation"),
    ("--clip-value", "clip_value", float, "clipping threshold c"),
    ("--preset", "preset", click.Choice(["test", "default", "deep"]),
     "CKKS parameters ('test' is insecure: tests only)"),
    ("--seed", "seed", int, "seed every party agrees on (initial weights, batches)"),
    ("--test-fraction", "test_fraction", float, "last fraction of each holder's rows held out"),
    ("--max-test-windows", "max_test_windows", int, "test windows the querier asks about"),
    ("--workers", "workers", int,
     "processes for the data holders' local training (default 0: one per data holder, at most two per "
     "CPU core; 1: sequential)"),
]

# The command's defaults beyond RunConfig's: use every core for the holders' local training.
_CLI_DEFAULTS: dict[str, Any] = {"workers": 0}


def _run_options(f):
    for flag, field, typ, help_ in reversed(_RUN_OPTIONS):
        f = click.option(flag, field, type=typ, default=None, help=help_)(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="TOML file with any of these options (flags override it)")(f)
    f = click.option("--out", "out", type=click.Path(file_okay=False), required=True,
                     help="output directory (keys, checkpoint, report.json, plots)")(f)
    f = click.option("--resume", is_flag=True, help="continue the run stopped in --out")(f)
    f = click.option("--quiet", is_flag=True, help="no progress bars")(f)
    return f


def _settings(config_path: str | None, defaults: dict[str, Any], flags: dict[str, Any]) -> dict:
    from rhode.federated.config import load_toml

    merged: dict[str, Any] = dict(defaults)
    if config_path:
        merged.update(load_toml(config_path))
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def _fail(message: str) -> None:
    click.echo(f"rhode: error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rhode")
def main() -> None:
    """Federated training of RNN/GRU/LSTM models under multiparty homomorphic encryption."""


def _execute(config_path: str | None, defaults: dict, flags: dict, out: str, resume: bool,
             quiet: bool) -> None:
    from rhode.federated.config import RunConfig
    from rhode.federated.run import run_training, summary

    try:
        cfg = RunConfig.from_dict(_settings(config_path, defaults, flags))
        report = run_training(cfg, Path(out), resume=resume, progress=not quiet)
    except RhodeError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the last checkpoint is kept, continue with --resume")
    click.echo(summary(report))


@main.command()
@_run_options
def demo(out, resume, quiet, config_path, **flags) -> None:
    """The main job: 3 data holders on the bundled electricity-demand data train an encrypted
    model together, then a querier gets encrypted predictions on held-out windows."""
    defaults = {**_CLI_DEFAULTS, "dataset": "electricity", "parties": 3, "partition": "iid"}
    _execute(config_path, defaults, flags, out, resume, quiet)


@main.command()
@click.option("--data", "data", multiple=True, type=click.Path(dir_okay=False),
              help="one CSV per data holder (repeat, or list several after one --data)")
@click.option("--dataset", type=click.Choice(["electricity", "stocks"]), default=None,
              help="a bundled dataset instead of CSV files")
@click.option("--target", default=None, help="column to forecast")
@click.option("--features", default=None,
              help="comma-separated input columns (default: every numeric column)")
@click.option("--parties", type=int, default=None, help="data holders (with --dataset)")
@click.option("--partition", type=click.Choice(["iid", "blocks", "skew"]), default=None,
              help="how a bundled dataset is split among the data holders")
@click.argument("more_data", nargs=-1, type=click.Path(dir_okay=False))
@_run_options
def train(out, resume, quiet, config_path, more_data, **flags) -> None:
    """Train with one data holder per CSV file: rhode train --data A.csv B.csv C.csv --target COL --out DIR"""
    files = list(flags.pop("data")) + list(more_data)
    if files:
        flags["data"] = files
    features = flags.pop("features")
    if features:
        flags["features"] = [f.strip() for f in features.split(",") if f.strip()]
    _execute(config_path, dict(_CLI_DEFAULTS), flags, out, resume, quiet)


@main.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False), required=True,
              help="directory of a trained run (rhode train/demo --out)")
@click.option("--data", "data", type=click.Path(dir_okay=False), required=True,
              help="the querier's CSV (same columns as the training data)")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="where predictions.csv, the plot and report.json go")
def predict(model_dir, data, out) -> None:
    """A querier's encrypted predictions from a trained encrypted model; only the querier decrypts."""
    from rhode.federated.run import run_prediction

    try:
        report = run_prediction(Path(model_dir), Path(data), Path(out))
    except RhodeError as exc:
        _fail(str(exc))
    click.echo(f"{report['windows']} predictions written to {report['predictions_csv']}"
               + (f" (test MAE {report['test_mae']:.4g})" if report.get("test_mae") is not None else ""))


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``rhode`` script: click's usage errors become one ``rhode: error:`` line."""
    try:
        main.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "))


if __name__ == "__main__":  # pragma: no cover
    run()
