"""Run report (report.json, strict JSON), plots (loss per global iteration, predictions vs truth) and
the divergence check of the global iterations."""

from __future__ import annotations

import io
import json
import math
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rhode.errors import ParameterError
from rhode.federated.files import atomic_write

#: Divergence rule (:func:`check_divergence`), on the decrypted global training loss (MSE/2 in the
#: normalized units of the model's target). Predicting the mean costs about 1/18 = 0.056 there, so:
LOSS_CEILING = 1e3  # a loss above this is divergence at any iteration (the first included)
LOSS_GROWTH = 100.0  # ... and so is a loss above this many times the first iteration's loss
LOSS_FLOOR = 1.0  # ... once it is also above this (18x the mean's loss: growth from a tiny first loss
#                    to a still small one is not divergence)
NON_FINITE_KEY = "non_finite_fields"


class DivergenceError(ParameterError):
    """The global training loss became non-finite or grew past the bound: the learning rate is too
    large for the data (or the momentum too high)."""


def check_divergence(history: Sequence[dict[str, Any]], learning_rate: float) -> None:
    """Raise :class:`DivergenceError` when the last record's decrypted global loss
    (``loss_encrypted``) is non-finite, above :data:`LOSS_CEILING`, or above both
    :data:`LOSS_GROWTH` times the first record's loss and :data:`LOSS_FLOOR`. The one-line message
    names the iteration, the loss and the learning rate to lower. ``history``: the run's iteration
    records, oldest first (``iteration``, ``loss_encrypted``); records without a loss are skipped."""
    losses = [h.get("loss_encrypted") for h in history]
    if not history or losses[-1] is None:
        return
    loss = float(losses[-1])
    first = next(float(v) for v in losses if v is not None)
    it = int(history[-1].get("iteration", len(history)))
    if not math.isfinite(loss):
        why = "not a finite number"
    elif loss > LOSS_CEILING:
        why = f"above the bound {LOSS_CEILING:g}"
    elif loss > LOSS_GROWTH * first and loss > LOSS_FLOOR:
        why = f"{loss / first:.3g} times the first iteration's {first:.3g}"
    else:
        return
    kept = f"the checkpoint of iteration {it - 1} is kept" if it > 1 else "no checkpoint was written"
    raise DivergenceError(
        f"training diverged at global iteration {it}: the decrypted global loss is {loss:.3g} ({why}); "
        f"the learning rate {learning_rate:g} is too large for this data: lower --learning-rate "
        f"(e.g. to {learning_rate / 2:g}) and start a new run in another --out ({kept})")


def peak_rss_mb(workers: int = 1) -> float:
    """Peak resident memory in MiB: of this process (or its largest finished child), or with
    ``workers`` > 1 finished worker processes, this process's peak plus ``workers`` times the largest
    worker's (an upper bound of the peak of all of them together)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if workers > 1:
        return (own + workers * kids) / 1024.0
    return max(own, kids) / 1024.0


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented, strict JSON, atomically (mode 0600): numpy values become Python ones, every
    non-finite number becomes null and, if there was any, :data:`NON_FINITE_KEY` lists where
    (e.g. ``"history[2].loss_encrypted"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean, bad = strict_json(data)
    if bad:
        clean[NON_FINITE_KEY] = bad
    atomic_write(path, (json.dumps(clean, indent=2, allow_nan=False) + "\n").encode())
    return path


def strict_json(data: Any, where: str = "") -> tuple[Any, list[str]]:
    """``data`` as plain JSON values (dicts, lists, str, int, float, bool, None) with every NaN or
    infinity replaced by None, and the paths of those replaced."""
    if isinstance(data, np.ndarray):
        data = data.tolist()
    elif isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, dict):
        out, bad = {}, []
        for k, v in data.items():
            out[k], b = strict_json(v, f"{where}.{k}" if where else str(k))
            bad += b
        return out, bad
    if isinstance(data, (list, tuple)):
        pairs = [strict_json(v, f"{where}[{i}]") for i, v in enumerate(data)]
        return [v for v, _ in pairs], [p for _, b in pairs for p in b]
    if isinstance(data, float) and not math.isfinite(data):
        return None, [where]
    if data is None or isinstance(data, (str, int, float)):
        return data, []
    raise TypeError(f"not JSON serializable: {type(data).__name__} at {where or 'top level'}")


def plot_loss(path: str | Path, curves: dict[str, list[float]], title: str) -> Path:
    """Loss per global iteration, one line per run (encrypted, mirror, exact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"encrypted": "o-", "mirror": "s--", "plaintext (exact)": "^:"}
    for label, values in curves.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, styles.get(label, "-"), label=label)
    return _finish(fig, ax, path, "global iteration", "training loss (MSE/2, normalized units)", title)


def plot_predictions(path: str | Path, truth: np.ndarray, series: dict[str, np.ndarray],
                     title: str, unit: str = "") -> Path:
    """Predictions vs truth on the test windows (original units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0))
    ax.plot(truth, "k-", lw=1.5, label="truth")
    for label, values in series.items():
        style = {"color": "0.55", "ls": ":"} if label == "persistence" else {}
        ax.plot(values, lw=1.0, alpha=0.85, label=label, **style)
    return _finish(fig, ax, path, "test window", unit or "target", title)


def _finish(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, save (PNG, 120 dpi, atomically) and close a figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, buf.getvalue())  # 0600: the plots show decrypted values
    return Path(path)
