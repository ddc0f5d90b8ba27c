"""`rhode train` at its default options on CSV federations of real series the recipe was not tuned on.

The recipe (docs/recipe.md) was chosen on the bundled half-hourly electricity series. Here the
same defaults meet other cadences, splits and columns, as a new user would bring them: weekly,
daily and hourly series; 2 or 3 data holders split by time or by site; a date column; a non-numeric
column; one or several numeric features. Each federation is written as one CSV per data holder and
trained with ``rhode train --data ... --target ... --out ...`` and nothing else (encrypted, the
`default` preset). The rule it is held to: the encrypted model beats persistence wherever the
plaintext least-squares linear autoregression does, and is never more than 2 % worse than
persistence. Writes docs/benchmarks/federations.{md,json}.

The series come from `vega_datasets` and `statsmodels` (offline, inside their wheels):
``pip install -e '.[bench]'``. The weekly CO2 series has 59 missing weeks; rhode refuses empty
cells, so they are filled by linear interpolation here, as its error message asks.

    OMP_NUM_THREADS=1 .venv/bin/python bench/federations.py            # every federation, encrypted
    OMP_NUM_THREADS=1 .venv/bin/python bench/federations.py --mirror   # the plaintext mirror only (fast)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks" / "federations"
RULE_SLACK = 1.02  # never more than 2 % worse than persistence

Table = tuple[list[str], list[list[str]]]  # header, rows of cells


@dataclass(frozen=True)
class Federation:
    name: str
    cadence: str
    split: str
    target: str
    build: Callable[[], list[Table]]  # one table per data holder

    def write(self, directory: Path) -> list[Path]:
        paths = []
        for i, (header, rows) in enumerate(self.build()):
            p = directory / f"{self.name}-holder{i}.csv"
            p.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
            paths.append(p)
        return paths


def _blocks(header: list[str], rows: list[list[str]], n: int) -> list[Table]:
    """Split by time: n contiguous blocks of rows, one per data holder."""
    return [(header, [rows[i] for i in part]) for part in np.array_split(np.arange(len(rows)), n)]


def _co2_weekly() -> list[Table]:
    import statsmodels.api as sm

    s = sm.datasets.co2.load_pandas().data["co2"].interpolate(method="time").dropna()
    rows = [[d.strftime("%Y-%m-%d"), f"{v:.2f}"] for d, v in s.items()]
    return _blocks(["week", "co2"], rows, 3)


def _weather_daily() -> list[Table]:
    from vega_datasets import local_data

    w = local_data.seattle_weather()
    cols = ["precipitation", "temp_max", "temp_min", "wind"]
    rows = [[r.date.strftime("%Y-%m-%d"), *(f"{getattr(r, c):g}" for c in cols), r.weather] for r in w.itertuples()]
    return _blocks(["date", *cols, "weather"], rows, 2)


def _temps(frame) -> list[list[str]]:
    return [[d.strftime("%Y-%m-%d %H:%M"), f"{t:g}"] for d, t in zip(frame["date"], frame["temp"])]


def _temps_hourly_sites() -> list[Table]:
    from vega_datasets import local_data

    return [(["time", "temp_f"], _temps(local_data.seattle_temps())), (["time", "temp_f"], _temps(local_data.sf_temps()))]


def _temps_hourly_time() -> list[Table]:
    from vega_datasets import local_data

    return _blocks(["time", "temp_f"], _temps(local_data.seattle_temps()), 3)


FEDERATIONS = (
    Federation("co2-weekly", "weekly", "by time, 3 holders (1958-73, 1973-87, 1987-2001)", "co2", _co2_weekly),
    Federation("weather-daily", "daily", "by time, 2 holders (2012-13, 2014-15); 4 numeric + a text column",
               "temp_max", _weather_daily),
    Federation("temps-hourly-sites", "hourly", "by site, 2 holders (Seattle, San Francisco, 2010)", "temp_f",
               _temps_hourly_sites),
    Federation("temps-hourly-time", "hourly", "by time, 3 holders (Seattle 2010, four months each)", "temp_f",
               _temps_hourly_time),
)


def run_encrypted(fed: Federation, paths: list[Path], out: Path) -> dict:
    """`rhode train` at its defaults; its report.json plus the wall seconds."""
    cmd = [sys.executable, "-m", "rhode.cli", "train", "--data", *map(str, paths), "--target", fed.target,
           "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]})
    report = json.loads((out / "report.json").read_text())
    report["seconds_wall"] = time.perf_counter() - t0
    return report


def run_mirror(fed: Federation, paths: list[Path]) -> dict:
    """The same data pipeline and recipe on the plaintext mirror (no encryption): the model's MAE on
    the querier's windows and the baselines on them, as report.json names them."""
    from rhode.data import Normalizer, local_stats
    from rhode.federated.baselines import baselines
    from rhode.federated.config import RunConfig, model_configs
    from rhode.federated.dataprep import load_holders, querier_windows, window_holders, with_batch
    from rhode.federated.mirror import plain_fedavg, predict_plain
    from rhode.mhe import preset
    from rhode.nn.model import RecurrentModel

    cfg = RunConfig(data=tuple(map(str, paths)), target=fed.target).validate()
    holders = load_holders(cfg)
    window_holders(holders, Normalizer.from_stats(sum(local_stats(h.train) for h in holders)), cfg)
    cfg = with_batch(cfg, holders, preset(cfg.preset).slots)
    poly, _, train = model_configs(cfg, holders[0].train.n_features)
    model, parties = RecurrentModel(poly), [(h.X, h.Y) for h in holders]
    models = plain_fedavg(model, train, parties, cfg, [float(X.shape[0]) for X, _ in parties])
    w = querier_windows(holders, cfg.max_test_windows)
    out = baselines(w, parties, [h.train for h in holders], cfg.horizon)
    out["test_mae_mirror"] = float(np.mean(np.abs(w.levels(predict_plain(model, models[-1], w.X)) - w.truth)))
    out["features"] = holders[0].train.feature_names
    return out


def verdict(model_mae: float, persistence: float, linear_ar: float | None) -> tuple[bool, str]:
    """The rule: beat persistence where the linear AR does; never more than 2 % worse than it."""
    ar_beats = linear_ar is not None and linear_ar < persistence
    if ar_beats:
        return model_mae < persistence, "beats persistence (the linear AR does)"
    return model_mae <= RULE_SLACK * persistence, "within 2 % of persistence (the linear AR does not beat it)"


def row(fed: Federation, r: dict, key: str) -> dict:
    pers, ar = r["test_mae_persistence"], r.get("test_mae_linear_ar")
    ok, rule = verdict(r[key], pers, ar)
    return {"federation": fed.name, "cadence": fed.cadence, "split": fed.split, "target": fed.target,
            "features": r.get("features"), "mae": r[key], "persistence": pers, "linear_ar": ar,
            "drift": r.get("test_mae_drift"), "seasonal_naive": r.get("test_mae_seasonal_naive"),
            "mirror": r.get("test_mae_mirror"), "exact": r.get("test_mae_plaintext"),
            "ratio": r[key] / pers, "rule": rule, "holds": ok, "seconds": r.get("seconds_wall")}


def _f(v) -> str:
    return "–" if v is None else f"{v:.4g}"


def write_doc(rows: list[dict], mode: str, path: Path) -> None:
    head = ("| federation | cadence, split | target | model MAE | mirror | exact plaintext | persistence | linear AR "
            "| drift | seasonal naive | model / persistence | rule | holds | wall s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['federation']} | {r['cadence']}; {r['split']} | {r['target']} | {_f(r['mae'])} | "
             f"{_f(r['mirror'])} | {_f(r['exact'])} | "
             f"{_f(r['persistence'])} | {_f(r['linear_ar'])} | {_f(r['drift'])} | {_f(r['seasonal_naive'])} | "
             f"{r['ratio']:.3f} | {r['rule']} | {'yes' if r['holds'] else '**no**'} | {_f(r['seconds'])} |"
             for r in rows]
    text = [f"# `rhode train` at its defaults on untuned federations ({mode})", "",
            f"Written by `OMP_NUM_THREADS=1 .venv/bin/python bench/federations.py{' --mirror' if mode == 'mirror' else ''}`"
            f" on {dt.date.today()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}). MAE in the report's normalized units, on the "
            "querier's held-out windows (the last part of every holder's rows). See the module docstring "
            "for the data and the rule.", "", head, *lines, "",
            f"Every federation holds: {'yes' if all(r['holds'] for r in rows) else 'no'}.", ""]
    path.write_text("\n".join(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", action="store_true", help="the plaintext mirror only (minutes)")
    ap.add_argument("--only", default="", help="comma-separated federation names")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    feds = [f for f in FEDERATIONS if not args.only or f.name in args.only.split(",")]
    mode = "mirror" if args.mirror else "encrypted"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fed in feds:
            paths = fed.write(Path(tmp))
            if args.mirror:
                rows.append(row(fed, run_mirror(fed, paths), "test_mae_mirror"))
            else:
                rows.append(row(fed, run_encrypted(fed, paths, Path(tmp) / fed.name), "test_mae_encrypted"))
            print(json.dumps(rows[-1]), flush=True)
    stem = DOC if not args.only and not args.mirror else Path(tempfile.gettempdir()) / f"federations-{mode}"
    stem.with_suffix(".json").write_text(json.dumps({"mode": mode, "date": str(dt.date.today()), "rows": rows},
                                                    indent=1))
    write_doc(rows, mode, stem.with_suffix(".md"))
    print(f"wrote {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
