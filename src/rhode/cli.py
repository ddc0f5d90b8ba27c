"""The ``rhode`` command: ``rhode demo``, ``rhode train``, ``rhode predict``.

One error path (:func:`_one_error_line`, :func:`run`): every user error, unusable file or directory
(``OSError``), bad ``--config`` file and interruption (Ctrl-C, or SIGTERM, which the command treats as
Ctrl-C) ends with one ``rhode: error: ...`` line on stderr that names the options as typed, and exit
status 2; no traceback. ``rhode`` alone prints the help.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from rhode.errors import ParameterError, RhodeError
from rhode.federated.config import FLAGS

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Options shared by `demo` and `train`: (RunConfig field, click type, help); the flag is FLAGS[field]
# (a bool is a --flag/--no-flag pair).
_RUN_OPTIONS: list[tuple[str, Any, str]] = [
    ("cell", click.Choice(["rnn", "gru", "lstm"]), "recurrent cell"),
    ("hidden", int, "hidden units h"),
    ("timesteps", int, "timesteps T per window"),
    ("horizon", int, "forecast horizon (steps after the window)"),
    ("difference", bool,
     "forecast the target's change: its first difference is an input, the forecast is the last value "
     "plus the predicted change (default: on; docs/recipe.md)"),
    ("batch", int,
     "mini-batch size b (default 0 = auto: the samples one ciphertext holds for this model and preset, "
     "at most every holder's training windows)"),
    ("learning_rate", float, "SGD learning rate"),
    ("local_steps", int, "local mini-batch steps m per global iteration"),
    ("global_iterations", int, "global iterations G"),
    ("momentum", float,
     "heavy-ball momentum mu in [0, 1) (0: plain SGD); every data holder has its own velocity"),
    ("nesterov", bool, "Nesterov momentum (needs --momentum > 0)"),
    ("lr_decay", float,
     "step decay: the learning rate is multiplied by this every --lr-decay-every global iterations"),
    ("lr_decay_every", int, "global iterations between two learning-rate decays"),
    ("clip", click.Choice(["none", "poly", "tanh", "abs"]), "clip-by-value approximation"),
    ("clip_value", float, "clipping threshold c"),
    ("preset", click.Choice(["test", "default", "deep"]), "CKKS parameters ('test' is insecure: tests only)"),
    ("seed", int, "seed every party agrees on (initial weights, batches)"),
    ("test_fraction", float, "last fraction of each holder's rows held out"),
    ("max_test_windows", int, "test windows the querier asks about"),
    ("query_batches", int,
     "querier batches (each one ciphertext of up to a batch of windows) that rhode predict may reveal "
     "after training: reserved in the keys' decryption budget (docs/security.md)"),
    ("threshold", int,
     "t-out-of-N key: training goes on while at least t data holders answer (a strict majority; default "
     "0: all N, nothing extra shared; docs/security.md, 'Dropout')"),
    ("workers", int,
     "processes for the data holders' local training (default 0: one per data holder, at most two per "
     "CPU core; 1: sequential)"),
]

# The command's defaults beyond RunConfig's: use every core for the holders' local training.
_CLI_DEFAULTS: dict[str, Any] = {"workers": 0}


def _run_options(f):
    for name, typ, help_ in reversed(_RUN_OPTIONS):
        flag = f"{FLAGS[name]}/--no-{FLAGS[name][2:]}" if typ is bool else FLAGS[name]
        f = click.option(flag, name, type=typ, default=None, help=help_)(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="TOML file with any of these options, keys named as the flags: hidden = 16, "
                          "iterations = 4, data = [\"a.csv\", \"b.csv\"] (flags override it)")(f)
    f = click.option("--out", "out", type=click.Path(file_okay=False), required=True,
                     help="output directory (keys, checkpoint, report.json, plots)")(f)
    f = click.option("--resume", is_flag=True, help="continue the run stopped in --out")(f)
    f = click.option("--quiet", is_flag=True, help="no progress bars")(f)
    return f


def _settings(config_path: str | None, defaults: dict[str, Any], flags: dict[str, Any]) -> dict:
    from rhode.federated.config import read_config

    merged: dict[str, Any] = dict(defaults)
    if config_path:
        merged.update(read_config(config_path))
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def _fail(message: str) -> NoReturn:
    with contextlib.suppress(OSError):
        click.echo(f"rhode: error: {message}", err=True)
    sys.exit(2)


# errors that only a write (or a directory that cannot be made) raises
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                 errno.EFBIG}


def _os_message(exc: OSError, out: str | None) -> str:
    """``cannot write PATH: reason; what to do`` (a write error without a file name is in ``out``)."""
    path = os.fsdecode(exc.filename) if exc.filename is not None else out
    text = f"cannot {'write' if exc.errno in _WRITE_ERRNOS else 'access'}{f' {path}' if path else ''}: "
    text += exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return text + "; free some space or choose another --out"
    if out is not None and path is not None:
        inside = os.path.commonpath([os.path.abspath(path), os.path.abspath(out)]) == os.path.abspath(out)
        if inside:
            return text + "; choose another --out"
    return text


def _interrupted(out: str) -> str:
    """What an interrupted run in ``out`` kept, and how to continue it."""
    from rhode.federated.checkpoint import CHECKPOINT_NAME, read_checkpoint
    from rhode.federated.files import RUN_JSON

    d = Path(out)
    try:
        iteration = read_checkpoint(d).iteration if (d / CHECKPOINT_NAME).is_file() else None
    except (RhodeError, OSError):
        iteration = None
    if iteration is not None:
        return (f"interrupted; the last checkpoint (iteration {iteration}) in {out} is kept, continue "
                "with the same command and --resume")
    if (d / RUN_JSON).is_file():
        return (f"interrupted before the first checkpoint; the keys in {out} are kept, continue with the "
                "same command and --resume")
    return f"interrupted before the first checkpoint; nothing to resume in {out}, run the command again"


@contextlib.contextmanager
def _one_error_line(out: str | None, interrupted: Callable[[], str]):
    """The error path of every command: a RhodeError, an OSError, a file that is not UTF-8 text or an
    interruption becomes one ``rhode: error:`` line and exit status 2."""
    try:
        yield
    except KeyboardInterrupt:
        _fail(interrupted())
    except RhodeError as exc:
        _fail(str(exc).replace("\n", " ") or type(exc).__name__)
    except OSError as exc:
        _fail(_os_message(exc, out))
    except UnicodeDecodeError as exc:
        _fail(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")


def _check_out_dir(out: str) -> None:
    """Refuse an ``--out`` that cannot be made or written before anything is computed."""
    p = Path(out)
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not existing.is_dir():
        raise ParameterError(f"invalid value for --out: {existing} is a file, not a directory; choose "
                             "another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ParameterError(f"invalid value for --out: cannot write in {existing} (permission denied); "
                             "choose another --out")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rhode")
def main() -> None:
    """Federated training of RNN/GRU/LSTM models under multiparty homomorphic encryption."""


def _execute(config_path: str | None, defaults: dict, flags: dict, out: str, resume: bool,
             quiet: bool) -> None:
    with _one_error_line(out, lambda: _interrupted(out)):
        _check_out_dir(out)
        from rhode.federated.config import RunConfig
        from rhode.federated.run import run_training, summary

        cfg = RunConfig.from_dict(_settings(config_path, defaults, flags))
        report = run_training(cfg, Path(out), resume=resume, progress=not quiet)
    click.echo(summary(report))


@main.command(no_args_is_help=True)
@_run_options
def demo(out, resume, quiet, config_path, **flags) -> None:
    """The main job: 3 data holders on the bundled electricity-demand data train an encrypted
    model together, then a querier gets encrypted predictions on held-out windows."""
    defaults = {**_CLI_DEFAULTS, "dataset": "electricity", "parties": 3, "partition": "iid"}
    _execute(config_path, defaults, flags, out, resume, quiet)


@main.command(no_args_is_help=True)
@click.option(FLAGS["data"], "data", multiple=True, type=click.Path(dir_okay=False),
              help="one CSV per data holder (repeat, or list several after one --data)")
@click.option(FLAGS["dataset"], "dataset", type=click.Choice(["electricity", "stocks"]), default=None,
              help="a bundled dataset instead of CSV files")
@click.option(FLAGS["target"], "target", default=None, help="column to forecast")
@click.option(FLAGS["features"], "features", default=None,
              help="comma-separated input columns (default: every numeric column)")
@click.option(FLAGS["parties"], "parties", type=int, default=None, help="data holders (with --dataset)")
@click.option(FLAGS["partition"], "partition", type=click.Choice(["iid", "blocks", "skew"]), default=None,
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


@main.command(no_args_is_help=True)
@click.option("--model", "model_dir", type=click.Path(file_okay=False), required=True,
              help="directory of a trained run (rhode train/demo --out)")
@click.option("--data", "data", type=click.Path(dir_okay=False), required=True,
              help="the querier's CSV (same columns as the training data)")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="where predictions.csv, the plot and report.json go")
def predict(model_dir, data, out) -> None:
    """A querier's encrypted predictions from a trained encrypted model; only the querier decrypts."""
    with _one_error_line(out, lambda: "interrupted; run the same rhode predict command again"):
        _check_out_dir(out)
        from rhode.federated.run import run_prediction

        report = run_prediction(Path(model_dir), Path(data), Path(out))
    click.echo(f"{report['windows']} predictions written to {report['predictions_csv']}"
               + (f" (test MAE {report['test_mae']:.4g})" if report.get("test_mae") is not None else ""))


def _raise_interrupt(signum, frame) -> NoReturn:
    raise KeyboardInterrupt


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``rhode`` script: click's usage errors become one ``rhode: error:`` line, as
    does everything the commands raise (:func:`_one_error_line`); SIGTERM stops a run as Ctrl-C does."""
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        with _one_error_line(None, lambda: "interrupted"):
            main.main(args=argv, standalone_mode=False)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # `rhode` alone: the help
        click.echo(exc.ctx.get_help())
    except click.exceptions.Abort:  # an interruption outside a command
        _fail("interrupted")
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "))
    finally:
        if old is not None:  # called as a function (tests): the caller's handler again
            signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":  # pragma: no cover
    run()
