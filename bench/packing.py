"""Benchmark of the multi-dimensional packing against the naive one-sample-per-ciphertext baseline;
writes docs/benchmarks/packing.md and docs/benchmarks/packing.json.

Usage: ``.venv/bin/python bench/packing.py [--quick] [--preset test] [--cell rnn] [--steps 3]
[--extra default:16:32]``

One training step (forward over T timesteps, BPTT, SGD update with the tanh clip polynomial) of a
model with d = 4 input features, hidden size h and one output, on encrypted parameters (level 0) with
the cipher backend; 3 parties in one process (refreshes are real collective rounds). Time is process
CPU time (the machine is shared; wall time would measure the neighbours). For each h in {8, 16, 32}
and batch b in {1, 8, 32, 64} the packed step is measured at b itself. The naive baseline (c = 1,
cost linear in b) is measured at b = 1 and b = 4 and extrapolated linearly to each b (per-sample
cost = fixed cost / b + marginal cost); its operation counts are extrapolated the same way.
``--extra PRESET:H:B`` adds a group on another preset (the secure ``default`` one has twice the
slots, so twice the samples per ciphertext, at a higher cost per operation).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rhode.mhe import LocalCollective, preset  # noqa: E402
from rhode.mhe.evaluator import Evaluator  # noqa: E402
from rhode.nn.config import ModelConfig, TrainConfig  # noqa: E402
from rhode.nn.model import RecurrentModel  # noqa: E402
from rhode.nn.optim import sgd_update  # noqa: E402
from rhode.packing import plan  # noqa: E402
from rhode.tensor.cipher import CipherBackend  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
D_IN = 4
NAIVE_B = (1, 4)
KEYS = ("rotations", "ct_ct_mults", "ct_pt_mults", "const_mults", "relinearizations", "rescalings",
        "refreshes", "refreshed_ciphertexts")


def training_step(be: CipherBackend, model: RecurrentModel, params: dict, X: np.ndarray,
                  Y: np.ndarray, train: TrainConfig) -> tuple[float, dict]:
    """Process-CPU seconds and operation counts of one forward + BPTT + update."""
    pe = be.encrypt_params(params)
    be.prepare(model.param_shapes)
    be.reset_counters()
    t0 = time.process_time()
    yhat, cache = model.forward(be, pe, [be.data(X[:, t]) for t in range(X.shape[1])])
    grads = model.backward(be, pe, cache, yhat, be.data(Y), X.shape[0])
    sgd_update(be, pe, grads, train)
    sec = time.process_time() - t0
    return sec, be.counters()


def run(preset_name: str, hidden, batches, args) -> list[dict]:
    params_ckks = preset(preset_name)
    slots = params_ckks.slots
    rows = []
    for h in hidden:
        model = RecurrentModel(ModelConfig(args.cell, D_IN, h))
        init = model.init_params(0)
        plans = {b: plan(max(D_IN, h), b, slots) for b in batches}
        naive = plan(max(D_IN, h), 1, slots, naive=True)
        rot = set(naive.rotation_indices())
        for p in plans.values():
            rot |= set(p.rotation_indices())
        t0 = time.process_time()
        coll = LocalCollective(params_ckks, 3, sorted(rot), measure_bytes=False)
        keygen = time.process_time() - t0
        ev = Evaluator(coll.context)
        rng = np.random.default_rng(h)
        print(f"{preset_name} h={h}: H={naive.H}, {len(rot)} rotation keys, key generation {keygen:.1f} s CPU", flush=True)

        def measure(p, b, rng=rng, ev=ev, coll=coll, model=model, init=init):
            X = rng.uniform(-1, 1, (b, args.steps, D_IN))
            Y = rng.uniform(-1, 1, (b, 1))
            train = TrainConfig(learning_rate=0.1, batch_size=b, local_steps=1)
            return training_step(CipherBackend(ev, p, coll.refresh), model, init, X, Y, train)

        for b, p in plans.items():
            sec, cnt = measure(p, b)
            tot = cnt["total"]
            rows.append(_row(preset_name, "multi-dimensional", b, h, p, sec, tot, measured_b=b))
            print(f"  packed b={b:3d} c={p.c:3d} chunks={p.n_chunks(b):2d}: {sec:7.2f} s "
                  f"({sec / b:.3f} s/sample) rot={tot['rotations']} mult={_mults(tot)} "
                  f"refresh={tot['refreshes']}", flush=True)
            if args.profile:
                for op, c in cnt["by_op"].items():
                    print(f"      {op:13s} {c}")
        meas = {}
        for b in NAIVE_B:
            meas[b] = measure(naive, b)
            print(f"  naive  b={b:3d}: {meas[b][0]:7.2f} s", flush=True)
        (s1, c1), (s4, c4) = meas[NAIVE_B[0]], meas[NAIVE_B[1]]
        span = NAIVE_B[1] - NAIVE_B[0]
        for b in batches:
            w = (b - NAIVE_B[0]) / span
            sec = s1 + w * (s4 - s1)
            tot = {k: round(c1["total"][k] + w * (c4["total"][k] - c1["total"][k])) for k in KEYS}
            rows.append(_row(preset_name, "naive", b, h, naive, sec, tot, measured_b=list(NAIVE_B)))
    return rows


def _mults(t: dict) -> int:
    return t["ct_ct_mults"] + t["ct_pt_mults"] + t["const_mults"]


def _row(preset_name, packing, b, h, p, sec, tot, measured_b) -> dict:
    return {"preset": preset_name, "packing": packing, "b": b, "h": h, "H": p.H, "chunk": p.c,
            "ciphertexts_per_batch_tensor": p.n_chunks(b), "seconds": round(sec, 4),
            "seconds_per_sample": round(sec / b, 5), "rotations": tot["rotations"],
            "multiplications": _mults(tot), "ct_ct_mults": tot["ct_ct_mults"],
            "ct_pt_mults": tot["ct_pt_mults"], "const_mults": tot["const_mults"],
            "rescalings": tot["rescalings"], "refreshes": tot["refreshes"],
            "refreshed_ciphertexts": tot["refreshed_ciphertexts"], "measured_at_b": measured_b}


def write(rows: list[dict], args, out_md: Path, out_json: Path) -> None:
    p = preset(args.preset)
    meta = {"preset": p.name, "ring_dim": p.ring_dim, "depth": p.depth, "slots": p.slots,
            "usable_levels": p.usable_levels, "cell": args.cell, "timesteps": args.steps,
            "input_size": D_IN, "parties": 3, "clip": "tanh, degree 5",
            "time": "process CPU seconds, one thread", "machine": platform.machine(),
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"meta": meta, "configurations": rows}, indent=1) + "\n")
    by = {(r["preset"], r["packing"], r["h"], r["b"]): r for r in rows}
    groups = [(args.preset, args.hidden, args.batches)] + args.extra
    lines = [
        "# Packing benchmark: multi-dimensional vs naive",
        "",
        "Generated by `bench/packing.py` (do not edit by hand). One training step of an encrypted "
        f"{args.cell.upper()} (forward over T = {args.steps} timesteps, BPTT, SGD update with the degree-5 "
        f"tanh clip) with d = {D_IN} inputs, hidden size h, one output; 3 parties in one process, real "
        f"collective refreshes. Preset `{p.name}` (ring 2^{p.ring_dim.bit_length() - 1}, "
        f"{p.slots} slots, depth {p.depth}, {p.usable_levels} usable levels between refreshes): the "
        "`default` preset has only 3 usable levels, so a refresh lands before almost every polynomial; "
        "the `test` preset shows the packing itself (it is insecure, for measurement only). Time is "
        "process CPU seconds on one thread (the machine was shared; wall time would measure the "
        f"neighbours), {meta['date']}, {meta['machine']}.",
        "",
        f"Naive = one sample per ciphertext, measured at b = {NAIVE_B[0]} and b = {NAIVE_B[1]} and "
        "extrapolated linearly in b (its cost is a fixed part for the parameters plus a part per "
        "sample). Multi-dimensional = c = min(b, slots / H^2) samples per ciphertext, measured at b.",
        "",
        "| preset | h | H | b | chunk c | cts / tensor | packed s / sample | naive s / sample | speed-up | "
        "packed rot / mult / refresh | naive rot / mult / refresh |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, hidden, batches in groups:
        for h in hidden:
            for b in batches:
                pk, nv = by[(name, "multi-dimensional", h, b)], by[(name, "naive", h, b)]
                lines.append(
                    f"| {name} | {h} | {pk['H']} | {b} | {pk['chunk']} | "
                    f"{pk['ciphertexts_per_batch_tensor']} | "
                    f"{pk['seconds_per_sample']:.3f} | {nv['seconds_per_sample']:.3f} | "
                    f"{nv['seconds_per_sample'] / pk['seconds_per_sample']:.1f}x | "
                    f"{pk['rotations']} / {pk['multiplications']} / {pk['refreshes']} | "
                    f"{nv['rotations']} / {nv['multiplications']} / {nv['refreshes']} |")
    at32 = [f"{r['preset']} h = {r['h']}: "
            f"{by[(r['preset'], 'naive', r['h'], 32)]['seconds_per_sample'] / r['seconds_per_sample']:.1f}x"
            for r in rows if r["packing"] == "multi-dimensional" and r["b"] == 32]
    if at32:
        lines += ["", "**At b = 32** the packed step costs less per sample than the naive one by "
                  + ", ".join(at32) + "."]
    lines += [
        "",
        "Counts are per training step (all samples of the batch), multiplications = ct x ct + ct x pt + "
        "ct x constant; refresh = collective rounds (a round refreshes every due ciphertext at once, so "
        "the naive baseline has as many rounds with b times the ciphertexts). The speed-up grows with the samples one ciphertext holds: slots / H^2 = "
        + ", ".join(f"{p.slots // (max(4, h) ** 2)} at h = {h}" for h in args.hidden)
        + "; beyond that a batch spans ceil(b / c) ciphertexts and both costs grow linearly in b.",
        "",
        "Raw data: `packing.json` (per configuration: packing, b, h, seconds per sample, rotations, "
        "multiplications, refreshes, ...).",
        "",
    ]
    out_md.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="h = 8 and b in {1, 8} only")
    ap.add_argument("--preset", default="test")
    ap.add_argument("--cell", default="rnn", choices=("rnn", "gru", "lstm"))
    ap.add_argument("--steps", type=int, default=3, help="timesteps T")
    ap.add_argument("--profile", action="store_true", help="print counts per operation")
    ap.add_argument("--extra", action="append", default=[], metavar="PRESET:H:B",
                    help="an extra group on another preset, e.g. default:16:32 (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "packing.md")
    args = ap.parse_args()
    args.hidden = (8,) if args.quick else (8, 16, 32)
    args.batches = (1, 8) if args.quick else (1, 8, 32, 64)
    args.extra = [(e.split(":")[0], (int(e.split(":")[1]),), (int(e.split(":")[2]),)) for e in args.extra]
    rows = run(args.preset, args.hidden, args.batches, args)
    for name, hidden, batches in args.extra:
        rows += run(name, hidden, batches, args)
    write(rows, args, args.out, args.out.with_suffix(".json"))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
