"""Measure a Flower deployment against the in-process engine on the same data and options.

``python bench/flower_measure.py --root /tmp/rhode-measure`` splits a bundled dataset into one CSV per
data holder (contiguous blocks), then

1. runs the in-process engine (:class:`~rhode.federated.engine.Federation`, sequential: every holder
   in this process, as ``rhode train`` with ``--workers 1``) on those CSVs: key generation with the
   encrypted global statistics, then per global iteration (``Aggregator.iteration``: every holder's
   local-training job with the refresh rounds, FedAvg, the new model refreshed, the encrypted loss)
   its seconds, rounds, refresh rounds, refreshed ciphertexts and the bytes to and from each holder;
2. runs the same training on a localhost Flower deployment (SuperLink + one SuperNode per holder,
   TLS; ``LocalFederation`` of tests/federated/_localhost.py): rounds per global iteration, bytes per
   round per party, seconds per global iteration (from the aggregator's ``rounds.jsonl`` and
   ``run.json``).

Both run the same protocol (:class:`~rhode.federated.aggregator.Aggregator`) with the run options
given (default: ``rhode demo``'s, i.e. RunConfig's defaults); the in-process engine without the
deployment's ``refresh-margin`` (as ``rhode train`` runs it). One JSON summary is printed (also written
to ``ROOT/measure.json``). Wall-clock figures depend on the machine and its load: give them with the
machine they were measured on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from rhode.data import load_bundled
from rhode.data.bundled import BUNDLED

ROOT = Path(__file__).resolve().parent.parent
# LocalFederation (a SuperLink and SuperNodes on localhost) is test tooling, not part of the package:
# it lives in tests/federated/_localhost.py, imported from there
sys.path.insert(0, str(ROOT / "tests" / "federated"))


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
    """The in-process engine on ``csvs``: seconds, rounds and traffic per global iteration."""
    from rhode.federated.dataprep import load_holders
    from rhode.federated.engine import Federation
    from rhode.federated.flower.settings import DeployConfig

    dc = DeployConfig.from_run_config(rc)
    cfg = dataclasses.replace(dc.run, data=tuple(str(c) for c in csvs))
    holders = load_holders(cfg)
    margin = None  # as `rhode train` runs it; the deployment uses dc.refresh_margin
    with Federation(cfg, [h.train for h in holders], workers=1, margin=margin) as fed:
        t0 = time.perf_counter()
        stats = fed.keygen()
        t_keys = time.perf_counter() - t0
        agg = fed.agg
        enc = agg.encrypt_model(agg.model.init_params(cfg.seed))
        per_it = []
        for it in range(iterations):
            enc, rec = agg.iteration(it, enc, stats)
            per_it.append({"seconds": rec.seconds, "rounds": rec.rounds, "refresh_rounds": rec.refresh_rounds,
                           "refreshed_ciphertexts": rec.refreshed_ciphertexts, "loss": rec.loss,
                           "bytes_to_each_party": max(rec.bytes_sent_per_party.values(), default=0),
                           "bytes_from_each_party": max(rec.bytes_received_per_party.values(), default=0)})
    return {"seconds_keys_and_stats": t_keys, "refresh_margin": margin, "iterations": per_it}


def deployment(root: Path, csvs: list[Path], rc: dict, tls: bool = True) -> dict:
    """The same training on a localhost Flower deployment; figures from the aggregator's logs."""
    from _localhost import LocalFederation

    app = ROOT / "deploy" / "flower"
    server = Path(rc["server-dir"])
    with LocalFederation(root / "federation", [{"data": str(c)} for c in csvs], tls=tls) as fed:
        r = fed.run(app, rc, timeout=48 * 3600)
    status = json.loads((server / "status.json").read_text())
    if status.get("state") != "done":
        raise RuntimeError(f"the deployment run failed: {status}\n{r.output[-3000:]}")
    rounds = [json.loads(line) for line in (server / "rounds.jsonl").read_text().splitlines()]
    meta = json.loads((server / "run.json").read_text())
    keys = [x for x in rounds if x["tag"] == "keys"]
    per_it = []
    for h in meta["history"]:
        tag = f"iteration-{h['iteration']}"
        rs = [x for x in rounds if x["tag"] == tag]
        per_round = {}
        for x in rs:
            s = per_round.setdefault(x["step"], {"rounds": 0, "seconds": 0.0, "sent": 0, "received": 0})
            s["rounds"] += 1
            s["seconds"] += x["seconds"]
            s["sent"] += max(x["sent"].values(), default=0)
            s["received"] += max(x["received"].values(), default=0)
        per_it.append({"seconds": h["seconds"], "rounds": len(rs), "refresh_rounds": h["refresh_rounds"],
                       "refreshed_ciphertexts": h["refreshed_ciphertexts"],
                       "bytes_to_each_party": max(h["bytes_sent_per_party"].values()),
                       "bytes_from_each_party": max(h["bytes_received_per_party"].values()),
                       "by_step": per_round})
    return {"seconds_run": r.seconds, "seconds_keys": sum(x["seconds"] for x in keys),
            "key_rounds": len(keys),
            "key_bytes_to_each_party": sum(max(x["sent"].values(), default=0) for x in keys),
            "key_bytes_from_each_party": sum(max(x["received"].values(), default=0) for x in keys),
            "iterations": per_it}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/flower_measure.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="a fresh working directory")
    ap.add_argument("--dataset", default="electricity", choices=sorted(BUNDLED))
    ap.add_argument("--parties", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=1, help="global iterations to measure")
    ap.add_argument("--max-rows", type=int, default=None, help="use only the last rows of the dataset")
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--skip-deployment", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="run-config override, e.g. --set preset=deep --set hidden=4 (JSON values)")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    csvs = split_bundled(a.dataset, a.parties, root / "data", a.max_rows)
    rc = {"n-parties": a.parties, "server-dir": str(root / "server"), "target": BUNDLED[a.dataset].target,
          "global-iterations": a.iterations}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            rc[k] = json.loads(v)
        except ValueError:
            rc[k] = v
    out: dict = {"run_config": rc, "dataset": a.dataset}
    if not a.skip_in_process:
        out["in_process"] = in_process(csvs, rc, a.iterations)
        print(json.dumps(out["in_process"], indent=1), flush=True)
    if not a.skip_deployment:
        out["deployment"] = deployment(root, csvs, rc)
    (root / "measure.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
