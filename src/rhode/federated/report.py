"""Run report (report.json) and plots (loss per global iteration, predictions vs truth)."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import numpy as np

from rhode.federated.files import atomic_write


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
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


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
        ax.plot(values, lw=1.0, alpha=0.85, label=label)
    return _finish(fig, ax, path, "test window", unit or "target", title)


def _finish(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, save (120 dpi) and close a figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
