"""What a t-out-of-N key costs (``--threshold``): key generation with and without, and one recovery.

In-process (sequential engine, payload bytes measured as they would weigh on the wire), the bundled
electricity series split over N data holders, the demo model (RNN, h = 8, T = 3, batch 128) and a
real preset (default: ``default``, ring 2^14). For each of ``t = N`` (no pieces) and the given
threshold: seconds and bytes to / from each holder for key generation (median of ``--repeats`` runs),
then with the threshold the recovery of one holder (``RECOVER`` + ``ADOPT``: seconds and bytes) after
it stops answering at the start of global iteration 1. Writes docs/benchmarks/dropout.{md,json}.

    OMP_NUM_THREADS=1 .venv/bin/python bench/dropout.py [--parties 4] [--threshold 3] [--preset default]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks" / "dropout"
KEY_STEPS = ("query.setup", "query.ckg", "query.jointkey", "query.rkg1", "query.rkg2", "query.evalkeys",
             "query.stats", "query.decrypt", "query.rotkeys")


def _federation(n: int, threshold: int, preset: str):
    from rhode.federated.config import RunConfig
    from rhode.federated.dataprep import load_holders
    from rhode.federated.engine import Federation

    cfg = RunConfig(dataset="electricity", parties=n, threshold=threshold, batch=128, preset=preset,
                    global_iterations=1).validate()
    holders = load_holders(cfg)
    return cfg, holders, Federation(cfg, [h.train for h in holders])


def _bytes(rounds, key: str) -> int:
    return max((sum(getattr(r, key).get(p, 0) for r in rounds) for p in {q for r in rounds
                                                                      for q in getattr(r, key)}), default=0)


def keygen_cost(n: int, threshold: int, preset: str) -> dict:
    cfg, holders, fed = _federation(n, threshold, preset)
    with fed:
        t0 = time.monotonic()
        fed.keygen()
        seconds = time.monotonic() - t0
        rounds = [r for r in fed.transport.rounds if r.step in KEY_STEPS]
        return {"seconds": seconds, "rounds": len(rounds), "bytes_to_each_holder": _bytes(rounds, "sent"),
                "bytes_from_each_holder": _bytes(rounds, "received")}


def recovery_cost(n: int, threshold: int, preset: str) -> dict:
    """Holder 1 stops answering at the first round of iteration 1; the recovery's rounds."""


    cfg, holders, fed = _federation(n, threshold, preset)
    with fed:
        stats = fed.keygen()
        enc = fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed))
        fed.transport.handlers.pop(1)
        t0 = time.monotonic()
        fed.agg.iteration(0, enc, stats)
        total = time.monotonic() - t0
        rec = [r for r in fed.transport.rounds if r.step in ("query.recover", "query.adopt")]
        return {"seconds_recover_round": rec[0].seconds, "seconds_adopt_round": rec[1].seconds,
                "bytes_to_rebuilder": rec[1].sent.get(0, 0),
                "bytes_from_each_helper": max(rec[0].received.values()),
                "seconds_iteration_with_recovery": total, "dropouts": fed.agg.dropouts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parties", type=int, default=4)
    ap.add_argument("--threshold", type=int, default=3)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    out: dict = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "parties": a.parties,
                 "threshold": a.threshold, "preset": a.preset, "repeats": a.repeats,
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                          capture_output=True, text=True).stdout.strip()}
    for name, t in (("without", a.parties), ("with", a.threshold)):
        runs = [keygen_cost(a.parties, t, a.preset) for _ in range(a.repeats)]
        out[f"keygen_{name}"] = {**runs[0], "seconds": statistics.median(r["seconds"] for r in runs)}
    out["recovery"] = recovery_cost(a.parties, a.threshold, a.preset)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    DOC.with_suffix(".md").write_text(_markdown(out))
    print(json.dumps(out, indent=1))


def _markdown(o: dict) -> str:
    w, t, r = o["keygen_without"], o["keygen_with"], o["recovery"]
    mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
    return f"""# t-out-of-N keys: what they cost

`OMP_NUM_THREADS={o['omp_threads']} .venv/bin/python bench/dropout.py --parties {o['parties']} \\
--threshold {o['threshold']} --preset {o['preset']}` on {o['date']} ({o['machine']}, commit {o['commit']}):
in-process, the bundled electricity series over {o['parties']} data holders, RNN h = 8, T = 3,
batch 128, preset `{o["preset"]}`; key generation the median of {o["repeats"]} runs, bytes as they would weigh on
the wire.

| | t = N (no pieces) | t = {o['threshold']} |
|---|---|---|
| key generation | {w['seconds']:.1f} s, {w['rounds']} rounds | {t['seconds']:.1f} s, {t['rounds']} rounds |
| bytes to each holder | {mb(w['bytes_to_each_holder'])} | {mb(t['bytes_to_each_holder'])} |
| bytes from each holder | {mb(w['bytes_from_each_holder'])} | {mb(t['bytes_from_each_holder'])} |

Recovery of one holder (it stops answering in the first round of global iteration 1): `RECOVER`
{r['seconds_recover_round']:.2f} s ({mb(r['bytes_from_each_helper'])} from each of the {o['threshold']}
helpers: one sealed piece each), `ADOPT` {r['seconds_adopt_round']:.2f} s
({mb(r['bytes_to_rebuilder'])} to the rebuilder); the whole iteration with its recovery and restart
{r['seconds_iteration_with_recovery']:.1f} s. The extra key-generation bytes are the N−1 sealed pieces
each holder sends and receives (8 bytes per residue: ring dimension × RNS primes).
"""


if __name__ == "__main__":
    main()
