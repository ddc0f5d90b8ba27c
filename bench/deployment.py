"""A Flower deployment against the in-process engine, on the same data and options, in one invocation.

``python bench/deployment.py --root DIR --json FILE [--iterations N] [--set KEY=VALUE ...]`` splits the
bundled electricity series into one CSV per data holder (contiguous blocks) and runs, in this order:

1. the in-process engine (:class:`~rhode.federated.engine.Federation`, the holders' jobs in worker
   processes as ``rhode train`` runs them) with the recommended deployment settings
   (:data:`RECOMMENDED`): seconds, rounds and bytes per global iteration;
2. a localhost Flower deployment (a real SuperLink and one SuperNode per holder, TLS;
   ``LocalFederation`` of tests/federated/_localhost.py) with the same settings;
3. the same deployment with the default preset (what a deployment used before this benchmark's
   settings became the default of ``deploy/flower``), the reference.

Every deployed round is broken down from the aggregator's ``rounds.jsonl``, where each holder reports
its part (:mod:`rhode.federated.flower.relay`): the ``flwr-clientapp`` process's start (interpreter,
imports, the app), loading state from storage, the step (deserialization and homomorphic work),
encoding the answer, the relay to the holder service; the rest of the round is waiting in Flower
(SuperNode and SuperExec polling, message transfer). FILE gets the figures and
docs/benchmarks/deployment.md is written from the same data. Wall-clock figures depend on the machine
and its load: run it on a quiet machine, ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "federated"))  # LocalFederation: test tooling, not the package

import numpy as np  # noqa: E402

from rhode.data import load_bundled  # noqa: E402
from rhode.data.bundled import BUNDLED  # noqa: E402

#: the deployment settings this benchmark recommends (deploy/flower's defaults)
RECOMMENDED = {"preset": "deep", "refresh-margin": 6}
#: the reference: the deployment with the default preset
OLD_DEFAULT = {"preset": "default", "refresh-margin": 6}
#: the demo configuration (RunConfig's defaults) with the batch a deployment must give
DEMO = {"batch": 128}
PARTS = ("process_start", "load", "step", "encode", "relay_overhead", "waiting_in_flower")


def split_bundled(name: str, n: int, directory: Path, max_rows: int | None = None) -> list[Path]:
    """Write the bundled dataset ``name`` as ``n`` CSVs of contiguous rows (its own header)."""
    from importlib import resources
    info = BUNDLED[name]
    load_bundled(name)  # validates the name
    with resources.as_file(resources.files("rhode.data") / "bundled" / info.file) as path:
        lines = Path(path).read_text().splitlines()
    header, rows = lines[0], lines[1:]
    if max_rows is not None:
        rows = rows[-max_rows:]
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i, block in enumerate(np.array_split(np.arange(len(rows)), n)):
        p = directory / f"holder-{i}.csv"
        p.write_text("\n".join([header] + [rows[j] for j in block]) + "\n")
        out.append(p)
    return out


def in_process(csvs: list[Path], rc: dict, iterations: int) -> dict:
    """The in-process engine (parallel, as ``rhode train``) on ``csvs`` with the run config ``rc``."""
    from rhode.federated.dataprep import load_holders
    from rhode.federated.engine import Federation
    from rhode.federated.flower.settings import DeployConfig
    from rhode.federated.run import n_workers
    from rhode.mhe import MheContext

    dc = DeployConfig.from_run_config(rc)
    cfg = dataclasses.replace(dc.run, data=tuple(str(c) for c in csvs))
    holders = load_holders(cfg)
    workers = n_workers(0, len(holders))
    with Federation(cfg, [h.train for h in holders], workers=workers, margin=dc.refresh_margin) as fed:
        t0 = time.perf_counter()
        stats = fed.agg.keygen(MheContext(dc.params))  # the deployment's budget and preset
        t_keys = time.perf_counter() - t0
        agg = fed.agg
        enc = agg.encrypt_model(agg.model.init_params(cfg.seed))
        per_it = []
        for it in range(iterations):
            enc, rec = agg.iteration(it, enc, stats)
            per_it.append({"seconds": rec.seconds, "rounds": rec.rounds, "refresh_rounds": rec.refresh_rounds,
                           "refreshed_ciphertexts": rec.refreshed_ciphertexts,
                           "bytes_to_each_holder": max(rec.bytes_sent_per_party.values(), default=0),
                           "bytes_from_each_holder": max(rec.bytes_received_per_party.values(), default=0)})
    return {"workers": workers, "seconds_keys": t_keys, "iterations": per_it, **_per_iteration(per_it)}


def _per_iteration(per_it: list[dict]) -> dict:
    return {
        "seconds_per_iteration": statistics.median(x["seconds"] for x in per_it),
        "rounds_per_iteration": statistics.median(x["rounds"] for x in per_it),
        "bytes_to_each_holder_per_iteration": statistics.median(x["bytes_to_each_holder"] for x in per_it),
        "bytes_from_each_holder_per_iteration": statistics.median(x["bytes_from_each_holder"] for x in per_it),
    }


def breakdown(rounds: list[dict]) -> dict:
    """Median seconds per round of each part (the slowest holder of each round: it decides when the
    round ends), and the round's total."""
    parts: dict[str, list[float]] = {k: [] for k in (*PARTS, "round")}
    for r in rounds:
        hs = r.get("holders") or {}
        if not hs:
            continue
        t = max(hs.values(), key=lambda h: h.get("process_start", 0) + h.get("relay", 0))
        inside = t.get("load", 0) + t.get("step", 0) + t.get("encode", 0)
        vals = {"process_start": t.get("process_start", 0.0), "load": t.get("load", 0.0),
                "step": t.get("step", 0.0), "encode": t.get("encode", 0.0),
                "relay_overhead": max(0.0, t.get("relay", 0.0) - inside)}
        vals["waiting_in_flower"] = max(0.0, r["seconds"] - t.get("process_start", 0) - t.get("relay", 0))
        vals["round"] = r["seconds"]
        for k, v in vals.items():
            parts[k].append(v)
    return {k: statistics.median(v) if v else None for k, v in parts.items()}


def _computing(r: dict) -> float:
    """Seconds of a round the slowest holder spent computing (loading, its step, encoding the answer)."""
    return max((h.get("load", 0) + h.get("step", 0) + h.get("encode", 0) for h in (r.get("holders") or {}).values()),
               default=0.0)


def floor(rounds: list[dict], iterations: int) -> dict:
    """What a round costs besides the holders' computing: the smallest and the median of (round seconds -
    the slowest holder's computing) over ``rounds``, and the holders' computing per iteration."""
    over = [max(0.0, r["seconds"] - _computing(r)) for r in rounds]
    return {"min_round_overhead": min(over, default=None),
            "median_round_overhead": statistics.median(over) if over else None,
            "holder_computing_per_iteration": sum(_computing(r) for r in rounds) / max(1, iterations)}


def deployment(root: Path, csvs: list[Path], rc: dict) -> dict:
    """Training on a localhost Flower deployment (TLS); figures from the aggregator's logs."""
    from _localhost import LocalFederation

    server = Path(rc["server-dir"])
    t0 = time.perf_counter()
    with LocalFederation(root / "federation", [{"data": str(c)} for c in csvs], tls=True) as fed:
        r = fed.run(ROOT / "deploy" / "flower", rc, timeout=48 * 3600)
    status = json.loads((server / "status.json").read_text())
    if status.get("state") != "done":
        raise RuntimeError(f"the deployment run failed: {status}\n{r.output[-3000:]}")
    rounds = [json.loads(line) for line in (server / "rounds.jsonl").read_text().splitlines()]
    meta = json.loads((server / "run.json").read_text())
    keys = [x for x in rounds if x["tag"] == "keys"]
    per_it, it_rounds = [], []
    for h in meta["history"]:
        rs = [x for x in rounds if x["tag"] == f"iteration-{h['iteration']}"]
        it_rounds += rs
        by_step: dict[str, dict] = {}
        for x in rs:
            s = by_step.setdefault(x["step"], {"rounds": 0, "seconds": 0.0})
            s["rounds"] += 1
            s["seconds"] += x["seconds"]
        per_it.append({"seconds": h["seconds"], "rounds": len(rs), "refresh_rounds": h["refresh_rounds"],
                       "refreshed_ciphertexts": h["refreshed_ciphertexts"],
                       "bytes_to_each_holder": max(h["bytes_sent_per_party"].values()),
                       "bytes_from_each_holder": max(h["bytes_received_per_party"].values()),
                       "by_step": by_step})
    return {"seconds_command": time.perf_counter() - t0, "key_rounds": len(keys),
            "seconds_keys": sum(x["seconds"] for x in keys),
            "key_bytes_to_each_holder": sum(max(x["sent"].values(), default=0) for x in keys),
            "key_bytes_from_each_holder": sum(max(x["received"].values(), default=0) for x in keys),
            "per_round": breakdown(it_rounds), "per_round_keys": breakdown(keys),
            "floor": floor(it_rounds, len(per_it)),
            "iterations": per_it, **_per_iteration(per_it)}


def ratios(out: dict) -> dict:
    """The acceptance ratios, from figures measured in this run."""
    ip, dep, old = out["in_process"], out["deployment"], out["old_default_deployment"]
    return {
        "deployment_vs_in_process": dep["seconds_per_iteration"] / ip["seconds_per_iteration"],
        "old_default_vs_deployment": old["seconds_per_iteration"] / dep["seconds_per_iteration"],
        "deployment_rounds_per_iteration": dep["rounds_per_iteration"],
        # 3x would need at most this; the recommended deployment's rounds at the smallest overhead
        # measured, plus its holders' computing, already cost the second figure
        "three_x_needs_seconds_per_iteration": old["seconds_per_iteration"] / 3,
        "rounds_at_min_overhead_plus_computing": dep["rounds_per_iteration"] * dep["floor"]["min_round_overhead"]
        + dep["floor"]["holder_computing_per_iteration"],
    }


def _mb(b: float) -> str:
    return f"{b / 2**20:.0f} MB"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def markdown(out: dict) -> str:
    """docs/benchmarks/deployment.md from the figures of one run."""
    ip, dep, old, r = out["in_process"], out["deployment"], out["old_default_deployment"], out["ratios"]
    rows = [("seconds per global iteration", f"{ip['seconds_per_iteration']:.1f} s",
             f"**{dep['seconds_per_iteration']:.1f} s**", f"{old['seconds_per_iteration']:.1f} s"),
            ("rounds per global iteration", f"{ip['rounds_per_iteration']:g} (in one process)",
             f"**{dep['rounds_per_iteration']:g}**", f"{old['rounds_per_iteration']:g}"),
            ("seconds per round (median)", "-", _s(dep["per_round"]["round"]), _s(old["per_round"]["round"])),
            ("bytes to / from each holder per iteration",
             f"{_mb(ip['bytes_to_each_holder_per_iteration'])} / {_mb(ip['bytes_from_each_holder_per_iteration'])}",
             f"{_mb(dep['bytes_to_each_holder_per_iteration'])} / "
             f"{_mb(dep['bytes_from_each_holder_per_iteration'])}",
             f"{_mb(old['bytes_to_each_holder_per_iteration'])} / "
             f"{_mb(old['bytes_from_each_holder_per_iteration'])}"),
            ("key generation", f"{ip['seconds_keys']:.1f} s",
             f"{dep['seconds_keys']:.1f} s in {dep['key_rounds']} rounds, {_mb(dep['key_bytes_to_each_holder'])} "
             f"to / {_mb(dep['key_bytes_from_each_holder'])} from each holder",
             f"{old['seconds_keys']:.1f} s in {old['key_rounds']} rounds")]
    lines = [
        "# Deployment at compute speed: measured",
        "",
        f"Generated by `{out['command']}` on {out['date']} ({out['machine']}, commit {out['commit']}, "
        f"`OMP_NUM_THREADS={out['omp_threads']}`): the bundled electricity series in {out['parties']} "
        f"contiguous blocks, one CSV per data holder; the demo configuration ({out['config_note']}), "
        f"{out['iterations']} global iteration(s) each (figures per iteration: the median over them, with 2 "
        "their mean; the loss of every iteration but the last rides on the next iteration's training job, "
        "the last one's has a job of its own); the deployments on localhost with TLS (a SuperLink, "
        f"{out['parties']} SuperNodes and the ServerApp on this machine).",
        "",
        f"| | in-process (`{RECOMMENDED['preset']}` preset, {ip['workers']} worker processes) | Flower, "
        f"recommended (`{RECOMMENDED['preset']}`, refresh-margin {RECOMMENDED['refresh-margin']}) | "
        f"Flower, `{OLD_DEFAULT['preset']}` preset (reference) |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"Ratios in this run: the recommended deployment takes **{r['deployment_vs_in_process']:.2f}x** the "
        f"in-process engine's time per global iteration (acceptance: at most 3x), the `default`-preset "
        f"deployment **{r['old_default_vs_deployment']:.2f}x** the recommended one's (at least 3x), with "
        f"**{r['deployment_rounds_per_iteration']:g}** rounds per global iteration (at most 30).",
        "",
        f"What 3x would take: at most {r['three_x_needs_seconds_per_iteration']:.1f} s per iteration. A round "
        f"of the recommended deployment costs at least {dep['floor']['min_round_overhead']:.2f} s besides the "
        f"holders' computing in this run (median {dep['floor']['median_round_overhead']:.2f} s: Flower's "
        "waiting, the ClientApp process, the transfers), and its holders compute "
        f"{dep['floor']['holder_computing_per_iteration']:.1f} s per iteration (each round's slowest holder): "
        f"{dep['rounds_per_iteration']:g} rounds at that smallest overhead plus the computing make "
        f"{r['rounds_at_min_overhead_plus_computing']:.1f} s.",
        "",
        "Where a deployed round's seconds go (median over the rounds of the global iterations; per round the "
        "holder that answered last):",
        "",
        "| part | recommended | `default` preset |",
        "|---|---|---|",
        *[f"| {p.replace('_', ' ')} | {_s(dep['per_round'][p])} | {_s(old['per_round'][p])} |" for p in PARTS],
        "",
        "`process start`: the `flwr-clientapp` process from its start to its handler (interpreter, Flower, "
        "the app); `load`: the holder service reading state from storage (context, evaluation keys, secret "
        "share: once per service); `step`: the protocol step in the service (deserializing the request's "
        "ciphertexts and the homomorphic work); `encode`: serializing the answer; `relay overhead`: the "
        "socket transfer between the ClientApp and the service; `waiting in Flower`: the rest of the round "
        "(the SuperNode's 3 s sleep when a pull finds no message, the SuperExec's 1 s polling, message "
        "transfer through the SuperLink, the ServerApp's own work).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/deployment.py", description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="a fresh working directory")
    ap.add_argument("--json", required=True, help="where to write the figures")
    ap.add_argument("--iterations", type=int, default=2,
                    help="global iterations to measure (2: one whose loss rides on the next training job, and the last)")
    ap.add_argument("--parties", type=int, default=3)
    ap.add_argument("--md", default=str(ROOT / "docs" / "benchmarks" / "deployment.md"),
                    help="the Markdown page to write ('' for none)")
    ap.add_argument("--runs", default="in_process,deployment,old_default_deployment",
                    help="which runs (comma-separated; also old_default_in_process); the ratios and the page "
                         "need the first three")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="run-config override for all three runs, e.g. --set hidden=4 (JSON values)")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    csvs = split_bundled("electricity", a.parties, root / "data")
    base = {"n-parties": a.parties, "global-iterations": a.iterations, "target": BUNDLED["electricity"].target,
            "batch": DEMO["batch"]}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            base[k] = json.loads(v)
        except ValueError:
            base[k] = v
    out: dict = {
        "command": "python bench/deployment.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "commit": _commit(), "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "parties": a.parties, "iterations": a.iterations, "run_config": base,
        "config_note": "RNN, h = 8, T = 3, 2 local steps, differencing, momentum 0.7, batch "
        f"{base['batch']}" + (f"; overrides {a.set}" if a.set else ""),
        "recommended": RECOMMENDED, "old_default": OLD_DEFAULT,
    }
    rec = {**base, **RECOMMENDED}
    runs = {
        "in_process": lambda: in_process(csvs, {**rec, "server-dir": str(root / "unused")}, a.iterations),
        "deployment": lambda: deployment(root / "recommended", csvs, {**rec, "server-dir": str(root / "server-rec")}),
        "old_default_deployment": lambda: deployment(root / "old", csvs, {**base, **OLD_DEFAULT,
                                                                          "server-dir": str(root / "server-old")}),
        "old_default_in_process": lambda: in_process(csvs, {**base, **OLD_DEFAULT,
                                                            "server-dir": str(root / "unused")}, a.iterations),
    }
    for name in a.runs.split(","):
        out[name] = runs[name]()
        Path(a.json).write_text(json.dumps(out, indent=1))
        print(json.dumps({name: out[name]}, indent=1), flush=True)
    if all(k in out for k in ("in_process", "deployment", "old_default_deployment")):
        out["ratios"] = ratios(out)
        Path(a.json).write_text(json.dumps(out, indent=1))
        if a.md:
            Path(a.md).write_text(markdown(out))
        print(json.dumps(out["ratios"], indent=1))
    return 0


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
