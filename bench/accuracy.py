"""Accuracy of the polynomial mirror against exact activations, federated and centralized, with rhode's
own data pipeline and default recipe (what ``rhode train`` / ``rhode demo`` run).

Rows: bundled electricity and stocks x RNN, GRU, LSTM x IID / "skew" (non-IID) x N in {3, 10} holders,
``RunConfig(dataset, parties=N, partition, cell, seed=0)`` with every other field at its default; data as
the encrypted run prepares it (``load_holders``, ``local_stats``, ``window_holders``, ``with_batch``);
``train_federated`` with the run's TrainConfig, seed, G and FedAvg weights. Per row: federated exact (the
reference), federated mirror with each clip, centralized exact (all training windows pooled in one
holder); scored in levels on every holder's test windows beside ``rhode.federated.baselines``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/accuracy.py --workers 2 --out docs/accuracy.md --save /tmp/accuracy.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/accuracy.py --only electricity,rnn,iid,3 --workers 1 --out /tmp/acc.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np

from rhode.data import Normalizer, Windows, local_stats
from rhode.errors import RhodeError
from rhode.federated.baselines import baselines
from rhode.federated.config import CLIPS, RunConfig, model_configs
from rhode.federated.dataprep import load_holders, window_holders, with_batch
from rhode.federated.mirror import predict_plain
from rhode.mhe import preset
from rhode.nn import make_clipper
from rhode.nn.activations import sigmoid_poly, tanh_poly
from rhode.nn.fedavg import train_federated
from rhode.nn.model import RecurrentModel

DATASETS, CELLS, SPLITS, PARTIES = ("electricity", "stocks"), ("rnn", "gru", "lstm"), ("iid", "skew"), (3, 10)
DEFAULTS = RunConfig()  # the field defaults only (no data: not a valid run by itself)
DEFAULT_CLIP, TARGET_GAP = DEFAULTS.clip, 0.05
UNITS = {"electricity": "MW", "stocks": "USD"}
#: the RunConfig fields that fix the recipe, printed in the header
_FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
RECIPE = [f for f in _FIELDS if f not in ("data", "dataset", "target", "features", "parties", "partition",
                                          "cell", "max_test_windows", "workers", "extra")]
#: alternatives to the default tanh approximation (RunConfig fields): mirror, default clip, IID, N = 3
ALTERNATIVES = {label: over for label, over in {
    "tanh ±2": {"tanh_interval": 2.0}, "tanh ±3": {"tanh_interval": 3.0}, "tanh deg. 5": {"tanh_degree": 5}
}.items() if set(over) <= set(_FIELDS) and any(getattr(DEFAULTS, k) != v for k, v in over.items())}
CELL_COST = {"rnn": 1.0, "gru": 2.5, "lstm": 3.0}
#: the default polynomial ModelConfig and TrainConfig (batch 1 here: the batch does not change them)
POLY, _, TRAIN = model_configs(dataclasses.replace(DEFAULTS, batch=1), 1)
#: one training run; kind: "exact" (federated), "mirror" (federated, polynomial), "central" (exact,
#: pooled); alt: a key of ALTERNATIVES, "" for the defaults
Job = namedtuple("Job", "dataset cell split parties kind clip alt", defaults=("",))
FED_EXACT = ("exact", DEFAULT_CLIP, "")


def run_config(job: Job, iterations: int | None = None) -> RunConfig:
    """The job's RunConfig: the defaults but dataset, N, partition, cell, seed 0, clip (alternative)."""
    over = dict(ALTERNATIVES.get(job.alt, {}), **({"global_iterations": iterations} if iterations else {}))
    return RunConfig(dataset=job.dataset, parties=job.parties, partition=job.split, cell=job.cell, seed=0,
                     clip=job.clip, **over).validate()


@cache
def prepare(dataset: str, split: str, parties: int) -> tuple[list, Windows, dict]:
    """The run's data (holders windowed as the encrypted run does), all test windows, and a summary
    with the resolved batch and the baselines on those windows (normalized level units)."""
    cfg = run_config(Job(dataset, "rnn", split, parties, "exact", DEFAULT_CLIP))
    holders = load_holders(cfg)
    cfg = with_batch(cfg, holders, preset(cfg.preset).slots)
    window_holders(holders, Normalizer.from_stats(sum(local_stats(h.train) for h in holders)), cfg)
    w = Windows.concatenate([h.test_windows for h in holders])
    base = baselines(w, [(h.X, h.Y) for h in holders], [h.train for h in holders], cfg.horizon)
    return holders, w, {"batch": cfg.batch, "train_windows": [len(h.X) for h in holders],
                        "test_windows": len(w), "scale": float(w.map.scale), **base}


def run_job(args: tuple[Job, int | None]) -> dict:
    """Train one configuration; its test MAE/RMSE in levels and the ranges its polynomials saw."""
    job, iterations = args
    t0, c0 = time.perf_counter(), time.process_time()
    holders, w, _ = prepare(job.dataset, job.split, job.parties)
    cfg = with_batch(run_config(job, iterations), holders, preset(DEFAULTS.preset).slots)
    poly, exact, train = model_configs(cfg, holders[0].train.n_features)
    model = RecurrentModel(poly if job.kind == "mirror" else exact)
    parties = [(h.X, h.Y) for h in holders]
    if job.kind == "central":
        parties = [(np.concatenate([X for X, _ in parties]), np.concatenate([Y for _, Y in parties]))]
    res = train_federated(model, train, parties, global_iterations=cfg.global_iterations, seed=cfg.seed,
                          weights=[float(len(X)) for X, _ in parties])
    with np.errstate(all="ignore"):
        err = w.levels(predict_plain(model, res.models[-1], w.X)) - w.truth
        mae, rmse = float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err ** 2)))
    diverged = not (np.isfinite(mae) and np.isfinite(rmse))
    mae, rmse = (float("inf"), float("inf")) if diverged else (mae, rmse)
    h = res.history
    return {**job._asdict(), "batch": cfg.batch, "G": cfg.global_iterations, "mae_norm": mae,
            "rmse_norm": rmse, "mae": mae * w.map.scale, "rmse": rmse * w.map.scale, "diverged": diverged,
            **{f"max_{k}": max(r[f"max_abs_{k}{'' if k == 'grad' else '_input'}"] for r in h)
               for k in ("tanh", "sigmoid", "grad")},
            "in_range": all(r["in_range"] for r in h), "tanh_interval": poly.tanh_interval,
            "sigmoid_interval": poly.sigmoid_interval, "clip_bound": train.clip_bound,
            "train_windows": sum(len(X) for X, _ in parties),
            "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def all_jobs(rows: list[tuple[str, str, str, int]]) -> list[Job]:
    """Every job of the given (dataset, cell, split, N) rows, longest first (LSTM, N = 10)."""
    jobs = []
    for ds, cell, s, n in rows:
        jobs += [Job(ds, cell, s, n, "exact", DEFAULT_CLIP), Job(ds, cell, s, n, "central", DEFAULT_CLIP)]
        jobs += [Job(ds, cell, s, n, "mirror", c) for c in CLIPS]
        if (s, n) == ("iid", 3):
            jobs += [Job(ds, cell, s, n, "mirror", DEFAULT_CLIP, alt) for alt in ALTERNATIVES]
    return sorted(jobs, key=lambda j: -CELL_COST[j.cell] * (j.parties if j.kind != "central" else 2))


def selected_rows(only: str) -> list[tuple[str, str, str, int]]:
    """The (dataset, cell, split, N) rows whose values include every comma-separated --only token."""
    keys = {k for k in only.split(",") if k}
    return [r for r in itertools.product(DATASETS, CELLS, SPLITS, PARTIES) if keys <= {*r[:3], str(r[3])}]


# ---------------------------------------------------------------- report --------------------------

def _fmt(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else ("inf" if not np.isfinite(v) else f"{v:.{digits}g}")


def _gap(r: dict, ex: dict) -> float:
    return r["mae"] / ex["mae"] - 1 if np.isfinite(r["mae"]) else float("inf")


def _gap_cell(r: dict | None, ex: dict) -> str:
    return "–" if r is None else f"{_fmt(r['mae'])} ({_gap(r, ex):+.1%}){'' if r['in_range'] else ' out'}"


def _span(xs: list[float], fmt: str = "{:.3f}") -> str:
    lo, hi = (fmt.format(min(xs)), fmt.format(max(xs))) if xs else ("–", "–")
    return lo if lo == hi else f"{lo} to {hi}"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)]


def miss_reason(r: dict) -> str:
    """Why a mirror run is more than 5 % worse than federated exact: "diverged", the polynomial inputs
    that left their intervals, or "approx." (all inside: the approximation's own error)."""
    if r["diverged"]:
        return "diverged"
    out = [f"{k} input {r[f'max_{k}']:.2f} outside ±{r[f'{k}_interval']:g}" for k in ("tanh", "sigmoid")
           if r[f"max_{k}"] > r[f"{k}_interval"] and (k == "tanh" or r["cell"] != "rnn")]
    if r["clip"] != "none" and r["max_grad"] > r["clip_bound"]:
        out.append(f"gradient {r['max_grad']:.2f} outside ±{r['clip_bound']:g}")
    return ", ".join(out) or "approx."


def clip_slope(clip: str) -> float:
    """d/dg (eta * clip(g)) / eta at g = 0: how the approximation rescales small gradients."""
    c, eps = make_clipper(dataclasses.replace(TRAIN, clip=clip)), 1e-6
    return float((c(np.array([eps]))[0] - c(np.array([-eps]))[0]) / (2 * eps) / TRAIN.learning_rate)


def approximation_errors() -> list[list]:
    """Table rows: max error of the default (and alternative tanh) polynomials and their derivatives."""
    tanhs = [(POLY.tanh_interval, POLY.tanh_degree)]
    for over in ALTERNATIVES.values():
        alt = (over.get("tanh_interval", POLY.tanh_interval), over.get("tanh_degree", POLY.tanh_degree))
        tanhs += [alt] if alt not in tanhs else []
    rows = []
    for name, f, fit, conf, s0 in (("tanh", np.tanh, tanh_poly, tanhs, 1.0),
                                   ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), sigmoid_poly,
                                    [(POLY.sigmoid_interval, POLY.sigmoid_degree)], 0.25)):
        for a, deg in conf:
            poly = fit(a, deg)
            slope = float(poly.derivative()(np.zeros(1))[0]) / s0
            for lo in (a, 1.0):
                x = np.linspace(-lo, lo, 2001)
                err = np.max(np.abs(poly(x) - f(x)))
                dx = np.max(np.abs(poly.derivative()(x) - (f(x + 1e-6) - f(x - 1e-6)) / 2e-6))
                rows.append([name, f"degree {deg} on ±{a:g}", f"±{lo:g}", f"{err:.1e}", f"{dx:.1e}",
                             f"{slope:.3f}"])
    return rows


def header(meta: dict) -> list[str]:
    rc, tr, mc, jobs = meta["recipe"], meta["train"], meta["model"], meta["jobs"]
    dirty = meta.get("dirty", [])
    recipe = ", ".join(f"{k} = {rc[k]}" + (" (auto)" if k == "batch" and not rc[k] else "") for k in RECIPE)
    if rc["global_iterations"] != DEFAULTS.global_iterations:
        recipe += f" (**not the default G = {DEFAULTS.global_iterations}: a smoke run**)"
    return [
        "# Accuracy: polynomial mirror vs exact activations, at rhode's default recipe", "",
        "Generated by `bench/accuracy.py` (do not edit by hand; rerun the command).", "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine']}; OMP_NUM_THREADS={meta['omp']}; {meta['workers']} worker process(es); "
        f"date {meta['date']}. Wall time {meta['wall']:.1f} s (mean 1-minute load {meta['load']}); "
        f"{meta['cpu']:.1f} CPU-seconds in all; {jobs['n']} training runs, {jobs['mean']:.2f} s each on "
        f"average, the longest {jobs['max']:.2f} s ({jobs['longest']}).",
        f"- Code: commit {meta['commit']}"
        + (" with uncommitted changes to " + ", ".join(dirty) if dirty else "") + ".",
        "- Recipe: `RunConfig(dataset, parties=N, partition, cell, seed=0)`, every other field at its "
        f"default: {recipe}. Resolved batch (`with_batch`): "
        + "; ".join(f"{k.replace('/', ' ')}: {v}" for k, v in meta["batches"].items())
        + f". TrainConfig (`model_configs`): clip bound B = {tr['clip_bound']:g}, clip degree "
        f"{tr['clip_degree']}, momentum {tr['momentum']:g}"
        f"{' (Nesterov)' if tr['nesterov'] else ' (heavy ball, velocity per holder)'}. Mirror: tanh degree "
        f"{mc['tanh_degree']} on ±{mc['tanh_interval']:g}, sigmoid degree {mc['sigmoid_degree']} on "
        f"±{mc['sigmoid_interval']:g}.",
        "- Runs: `train_federated`, FedAvg weighted by window counts. Federated exact = exact activations "
        "with the same TrainConfig (clip polynomial included): the plaintext baseline of `rhode train`. "
        f"Mirror = the polynomial model with each clip (clip={DEFAULT_CLIP} is the default). Centralized "
        "exact = one holder with all of the row's training windows pooled, same recipe, G and batch (per "
        "global iteration it takes m batches where the federation averages N holders' m batches each).",
        "- Data: `load_holders` (the bundled series partitioned among N holders, `iid` or `skew` = non-IID; "
        f"each holder's series split in time order, its last {rc['test_fraction']:.0%} held out, each part "
        "differenced), normalization from the summed `local_stats`, `window_holders`. A row's test set = "
        "every holder's held-out windows concatenated (it depends on the split and N); errors of the "
        "forecast *levels*.",
        "- Gap = mirror MAE / federated exact MAE − 1. Target: gap ≤ +5 %; a gap below −5 % (mirror "
        "better) is marked but not a miss; \"out\": some polynomial input left its interval.", ""]


def data_table(data: dict) -> list[str]:
    rows, notes = [], set()
    for key, d in data.items():
        if "error" in d:
            rows.append([*key.split("/"), f"refused: {d['error']}", *[""] * 7])
            continue
        tw, p = d["train_windows"], d["test_mae_persistence"]
        rows.append([*key.split("/"), f"{min(tw)}–{max(tw)} ({sum(tw)})", d["test_windows"], d["batch"],
                     *(_fmt(None if d[f"test_mae_{k}"] is None else d[f"test_mae_{k}"] * d["scale"])
                       for k in ("persistence", "drift", "seasonal_naive", "linear_ar")),
                     f"{d['test_mae_linear_ar'] / p:.3f}"])
        notes |= {f"{key.split('/')[0]}: {why}" for k, why in d["baseline_notes"].items()
                  if d[f"test_mae_{k}"] is None}
    return ["## Data and baselines per row", "",
            "MAE in original units on the row's test windows (`rhode.federated.baselines`).", "",
            *_table(["dataset", "split", "N", "train windows per holder (all)", "test windows", "batch",
                     "persistence", "drift", "seasonal naive", "linear AR", "linear AR ÷ pers."], rows),
            "", *(f"- Not computed, {n}." for n in sorted(notes)), ""]


def mae_table(ds: str, by: dict, data: dict) -> list[str]:
    rows = []
    for cell, s, n in itertools.product(CELLS, SPLITS, PARTIES):
        ex, d = by.get((ds, cell, s, n, *FED_EXACT)), data.get(f"{ds}/{s}/{n}", {})
        if ex is None or "error" in d:
            continue
        pers = d["test_mae_persistence"] * d["scale"]
        central = by.get((ds, cell, s, n, "central", DEFAULT_CLIP, ""))
        rs = [by.get((ds, cell, s, n, "mirror", c, "")) for c in CLIPS]
        reasons: dict[str, list[str]] = {}
        for r in (r for r in rs if r is not None and _gap(r, ex) > TARGET_GAP):
            reasons.setdefault(miss_reason(r), []).append(r["clip"])
        better = [r["clip"] for r in rs if r is not None and _gap(r, ex) < -TARGET_GAP]
        verdict = "yes" if not reasons else "no — " + "; ".join(f"{', '.join(c)}: {why}"
                                                               for why, c in reasons.items())
        verdict += f" (better than exact: {', '.join(better)})" if better else ""
        rows.append([cell, s, n, _fmt(pers), _fmt(central and central["mae"]), _fmt(ex["mae"]),
                     f"{ex['mae'] / pers:.3f}", *(_gap_cell(r, ex) for r in rs), verdict])
    rmse = [("central", DEFAULT_CLIP), ("exact", DEFAULT_CLIP), *(("mirror", c) for c in CLIPS)]
    rmse_rows = [[cell, s, n, *("–" if r is None else f"{_fmt(r['rmse'])} ({r['mae_norm']:.4f} / "
                                f"{r['rmse_norm']:.4f})" for r in rs)]
                 for cell, s, n in itertools.product(CELLS, SPLITS, PARTIES)
                 if any(rs := [by.get((ds, cell, s, n, k, c, "")) for k, c in rmse])]
    unit = UNITS.get(ds, "original units")
    return [f"## {ds}: test MAE ({unit})", "",
            *_table(["cell", "split", "N", "persistence", "central exact", "fed exact",
                     "fed exact ÷ persistence", *(f"mirror clip={c}" for c in CLIPS), "gap ≤ 5 %"], rows),
            "", "\"approx.\": every polynomial input stayed inside its interval, so the gap is the "
            "approximation's own error.", "",
            f"### {ds}: test RMSE ({unit}), normalized MAE / RMSE in parentheses", "",
            *_table(["cell", "split", "N", "central exact", "fed exact", *(f"clip={c}" for c in CLIPS)],
                    rmse_rows), ""]


def alternatives_table(by: dict) -> list[str]:
    rows = []
    for ds, cell in itertools.product(DATASETS, CELLS):
        if (ex := by.get((ds, cell, "iid", 3, *FED_EXACT))) is not None:
            rs = [by.get((ds, cell, "iid", 3, "mirror", DEFAULT_CLIP, a)) for a in ["", *ALTERNATIVES]]
            rows.append([ds, cell, _fmt(ex["mae"]), *(_gap_cell(r, ex) for r in rs),
                         f"{max(r['max_tanh'] for r in rs if r):.2f}"])
    if not ALTERNATIVES or not rows:
        return []
    return ["## Alternatives to the default tanh approximation", "",
            f"IID, N = 3, mirror with clip={DEFAULT_CLIP}; MAE and gap to the same federated exact run as "
            "above (RunConfig fields tanh_interval / tanh_degree).", "",
            *_table(["dataset", "cell", "fed exact", "defaults", *ALTERNATIVES, "max tanh input"], rows), ""]


def ranges_table(rows: list[dict]) -> list[str]:
    out = []
    for ds, cell in itertools.product(DATASETS, CELLS):
        rs = [r for r in rows if (r["kind"], r["alt"], r["dataset"], r["cell"]) == ("mirror", "", ds, cell)]
        if rs:
            top = {k: f"{max(r[f'max_{k}'] for r in rs):.2f}" for k in ("tanh", "sigmoid", "grad")}
            out.append([ds, cell, top["tanh"], "–" if cell == "rnn" else top["sigmoid"], top["grad"],
                        f"{sum(r['in_range'] for r in rs)}/{len(rs)}"])
    return ["## Ranges seen by the polynomials", "",
            "Largest |input| over every training step of the mirror runs with the default approximations "
            f"(all splits, N and clips); the defaults cover tanh ±{POLY.tanh_interval:g}, sigmoid "
            f"±{POLY.sigmoid_interval:g}, gradients ±{TRAIN.clip_bound:g} (B, for clip ≠ none).", "",
            *_table(["dataset", "cell", "max tanh input", "max sigmoid input", "max gradient entry",
                     "runs in range"], out),
            "", "Approximation errors (max over a grid of the interval and of [−1, 1]):", "",
            *_table(["function", "polynomial", "on", "max error", "max error of the derivative",
                     "slope at 0 ÷ exact"], approximation_errors()),
            "", "Slope at 0 of each clipping approximation ÷ learning rate (1 = small gradients pass "
            "unchanged): " + ", ".join(f"{c} {clip_slope(c):.3f}" for c in CLIPS) + ".", ""]


def _gaps(by: dict, clip: str, alt: str = "") -> dict[tuple, float]:
    return {k[:4]: _gap(r, by[(*k[:4], *FED_EXACT)]) for k, r in by.items()
            if k[4:] == ("mirror", clip, alt) and (*k[:4], *FED_EXACT) in by}


def _ratios(by: dict, data: dict, ds: str, cell: str | None, kind: str, base: str) -> list[float]:
    """Model MAE ÷ a baseline's MAE over the rows of (ds, cell) (normalized units, same windows)."""
    return [r["mae_norm"] / data[f"{ds}/{k[2]}/{k[3]}"][base] for k, r in by.items()
            if k[0] == ds and cell in (None, k[1]) and k[4:] == (kind, DEFAULT_CLIP, "")]


def _within(gaps: list[float]) -> str:
    return f"{sum(g <= TARGET_GAP for g in gaps)}/{len(gaps)}"


def _central_gaps(by: dict) -> list[float]:
    return [r["mae"] / by[(*k[:4], "central", DEFAULT_CLIP, "")]["mae"] - 1 for k, r in by.items()
            if k[4:] == FED_EXACT and (*k[:4], "central", DEFAULT_CLIP, "") in by]


def summary(by: dict, data: dict) -> list[str]:
    lines = ["## Summary", ""]
    for c in CLIPS:
        if gaps := _gaps(by, c):
            per = "; ".join(f"{ds} {_within(v)} (gaps {_span(v, '{:+.1%}')})" for ds in DATASETS
                            if (v := [g for k, g in gaps.items() if k[0] == ds]))
            lines.append(f"- mirror clip={c}{' (default)' if c == DEFAULT_CLIP else ''}: "
                         f"{_within(list(gaps.values()))} rows within 5 % — {per}.")
    lines.append("- Federated exact MAE ÷ centralized exact MAE − 1 (same pooled windows): "
                 f"{_span(_central_gaps(by), '{:+.1%}')}.")
    for ds, cell in itertools.product(DATASETS, CELLS):
        if ex := _ratios(by, data, ds, cell, "exact", "test_mae_persistence"):
            lines.append(
                f"- {ds} {cell}: MAE ÷ persistence: fed exact {_span(ex)}, mirror clip={DEFAULT_CLIP} "
                f"{_span(_ratios(by, data, ds, cell, 'mirror', 'test_mae_persistence'))}, centralized "
                f"{_span(_ratios(by, data, ds, cell, 'central', 'test_mae_persistence'))}; ÷ linear AR: fed "
                f"exact {_span(_ratios(by, data, ds, cell, 'exact', 'test_mae_linear_ar'))}, mirror "
                f"{_span(_ratios(by, data, ds, cell, 'mirror', 'test_mae_linear_ar'))}.")
    for a in ALTERNATIVES:
        if gaps := list(_gaps(by, DEFAULT_CLIP, a).values()):
            lines.append(f"- {a} (clip={DEFAULT_CLIP}, IID, N = 3): {_within(gaps)} within 5 % "
                         f"(gaps {_span(gaps, '{:+.1%}')}).")
    return [*lines, ""]


def notes(by: dict, data: dict, rows: list[dict]) -> list[str]:
    """"Reading the numbers": every figure computed from this run."""
    gaps, mirrors = _gaps(by, DEFAULT_CLIP), [r for r in rows if r["kind"] == "mirror" and not r["alt"]]
    if not gaps:
        return []
    worst, out = max(gaps, key=gaps.get), [r for r in mirrors if not r["in_range"]]
    top = max(mirrors, key=lambda r: r["max_tanh"])
    slope = float(tanh_poly(POLY.tanh_interval, POLY.tanh_degree).derivative()(np.zeros(1))[0])
    lines = [
        "## Reading the numbers", "",
        f"- With the defaults (tanh degree {POLY.tanh_degree} on ±{POLY.tanh_interval:g}, sigmoid degree "
        f"{POLY.sigmoid_degree} on ±{POLY.sigmoid_interval:g}, clip={DEFAULT_CLIP} with B = "
        f"{TRAIN.clip_bound:g}) the mirror is within 5 % of federated exact training on "
        f"{_within(list(gaps.values()))} rows; its largest gap is {gaps[worst]:+.1%} "
        f"({' '.join(map(str, worst))}). " + (
            "No polynomial input left its interval in any mirror run, so the gaps are the approximations' "
            "own error." if not out else
            f"{len(out)}/{len(mirrors)} mirror runs had an input outside its interval (miss reasons above)."),
        f"- With inputs this small (below), what matters most is each polynomial's slope at 0: the tanh "
        f"polynomial's is {slope:.3f} of tanh's, and each clip scales small gradients (hence the learning "
        f"rate) by its own slope (ranges section). With G = {rows[0]['G']} global iterations a lower slope "
        "trains a little slower; a slope above 1 can end below exact training (a learning-rate effect, not "
        f"a better approximation). The exact reference uses the run's clip={DEFAULT_CLIP} polynomial too, so "
        f"the clip={DEFAULT_CLIP} column isolates the activations.",
        f"- The largest tanh input seen was {top['max_tanh']:.2f} ({top['dataset']} {top['cell']}) against "
        f"±{POLY.tanh_interval:g}. Wider data, a larger h or learning rate move these ranges: check "
        "`in_range` in `FedResult.history` on the mirror before an encrypted run.",
        f"- Federated vs centralized exact: {_span(_central_gaps(by), '{:+.1%}')} (negative: federated is "
        "better). At equal G and batch the centralized run takes N times fewer gradient samples per "
        "iteration: this compares equal iteration budgets, not the cost of federating the data.",
        "- Every row is one seed (0) of one partition; docs/recipe.md measures the spread over seeds."]
    for ds in DATASETS:
        lin = [d["test_mae_linear_ar"] / d["test_mae_persistence"] for k, d in data.items()
               if k.startswith(ds + "/") and "error" not in d]
        if not (fed := _ratios(by, data, ds, None, "exact", "test_mae_persistence")) or not lin:
            continue
        text = (f"- {ds}: federated exact reaches {_span(fed)} × persistence MAE, the mirror "
                f"{_span(_ratios(by, data, ds, None, 'mirror', 'test_mae_persistence'))} ×, the plaintext "
                f"linear AR {_span(lin)} × (over the rows).")
        if min(lin) > 0.95:
            text += (f" The series is close to a random walk: even the linear AR is at best "
                     f"{1 - min(lin):.1%} better than persistence, so no model can be expected to beat it "
                     "by more than a few percent.")
        lines.append(text)
    return [*lines, ""]


def report(rows: list[dict], data: dict, meta: dict) -> str:
    by = {tuple(r[k] for k in Job._fields): r for r in rows}
    lines = header(meta) + data_table(data)
    for ds in (ds for ds in DATASETS if any(k[0] == ds for k in by)):
        lines += mae_table(ds, by, data)
    lines += alternatives_table(by) + ranges_table(rows) + summary(by, data) + notes(by, data, rows)
    return "\n".join(lines)


# ---------------------------------------------------------------- running -------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def run_all(a: argparse.Namespace) -> tuple[list[dict], dict, dict]:
    """Run every job (or the --only subset) on a process pool; print one line per finished job."""
    t0, c0 = time.perf_counter(), time.process_time()
    grid, data = selected_rows(a.only), {}
    for ds, s, n in dict.fromkeys((ds, s, n) for ds, _, s, n in grid):  # here: the forked workers inherit it
        try:
            data[f"{ds}/{s}/{n}"] = prepare(ds, s, n)[2]
        except RhodeError as exc:  # a RunConfig or data error: the row is reported as refused
            data[f"{ds}/{s}/{n}"] = {"error": str(exc)}
    ok = [r for r in grid if "error" not in data[f"{r[0]}/{r[2]}/{r[3]}"]]
    jobs = [(j, a.iterations) for j in all_jobs(ok)]
    rows, loads = [], []
    with mp.get_context("fork").Pool(max(1, a.workers)) as pool:
        for r in pool.imap_unordered(run_job, jobs):
            rows.append(r)
            loads.append(os.getloadavg()[0])
            print(f"[{time.perf_counter() - t0:6.1f}s] {r['dataset']:11s} {r['cell']:4s} {r['split']:4s} "
                  f"N={r['parties']:<2d} {r['kind']:7s} clip={r['clip']:4s} {r['alt']:13s} "
                  f"MAE {r['mae_norm']:.5f} ({r['seconds']:.2f}s) tanh {r['max_tanh']:.2f} "
                  f"sigmoid {r['max_sigmoid']:.2f} grad {r['max_grad']:.2f}", flush=True)
    cfg = run_config(Job(DATASETS[0], CELLS[0], SPLITS[0], PARTIES[0], *FED_EXACT), a.iterations)
    longest = max(rows, key=lambda r: r["seconds"]) if rows else {"seconds": 0.0}
    status = _git("status", "--porcelain", "--", "src", "bench/accuracy.py").splitlines()
    meta = {"command": "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(["bench/accuracy.py", *sys.argv[1:]]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                       f"({platform.platform()})",
            "omp": os.environ.get("OMP_NUM_THREADS", "unset"), "workers": a.workers,
            "wall": time.perf_counter() - t0, "date": dt.date.today().isoformat(),
            "cpu": sum(r["cpu"] for r in rows) + time.process_time() - c0,
            "load": f"{np.mean(loads):.1f}" if loads else "n/a",
            "commit": _git("rev-parse", "--short", "HEAD").strip() or "unknown",
            "dirty": sorted({ln[3:] for ln in status}), "recipe": {k: getattr(cfg, k) for k in RECIPE},
            "train": asdict(TRAIN), "model": asdict(POLY),
            "batches": {k: d.get("batch", "refused") for k, d in data.items()},
            "jobs": {"n": len(rows), "mean": float(np.mean([r["seconds"] for r in rows] or [0])),
                     "max": longest["seconds"], "longest": " ".join(
                         str(longest.get(k, "")) for k in ("dataset", "cell", "split", "parties", "kind"))}}
    return rows, data, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="docs/accuracy.md")
    p.add_argument("--save", default="", help="also write the raw results (JSON) here")
    p.add_argument("--render", default="", help="only rebuild the report from a --save file")
    p.add_argument("--only", default="", help="comma-separated row filter, e.g. electricity,rnn,iid,3")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"override G (default: RunConfig's, {DEFAULTS.global_iterations}); smoke runs only")
    a = p.parse_args(argv)
    if a.render:
        saved = json.loads(Path(a.render).read_text())
        rows, data, meta = saved["rows"], saved["data"], saved["meta"]
    else:
        rows, data, meta = run_all(a)
    if a.save:
        Path(a.save).write_text(json.dumps({"rows": rows, "data": data, "meta": meta}))
    Path(a.out).write_text(report(rows, data, meta))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
