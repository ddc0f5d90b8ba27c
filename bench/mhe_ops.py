"""Benchmark of the multiparty CKKS layer; writes docs/benchmarks/mhe.md.

Usage: ``.venv/bin/python bench/mhe_ops.py [--quick] [--presets test,default,deep] [--out PATH]``

Per preset: median process-CPU time of the ciphertext operations and of every protocol step (3 parties
in one process), serialized sizes of every object that crosses a process boundary, and collective
key-generation time and peak memory for N in {2, 4, 8} (each N in a fresh child process), with the
resident memory that stays after key generation (the public evaluation keys, held once per process).
``--quick`` runs the ``test`` preset only, with fewer repetitions.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rhode.mhe import LocalCollective, Querier, preset  # noqa: E402
from rhode.mhe import serial as S  # noqa: E402
from rhode.mhe.protocols import ProtocolKind, decryption, fold, key_switch, refresh, relin, rotation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROTATIONS = (1, 2, 4, 8, 16, 32, -1, -4)  # the rotation set used for key generation


def _cpu(fn, reps: int) -> float:
    """Median process-CPU time of ``fn()`` in milliseconds."""
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append((time.process_time() - t) * 1e3)
    return statistics.median(times)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def bench_ops(name: str, reps: int) -> dict:
    """Times (ms) and sizes (bytes) for one preset, 3 parties in one process."""
    params = preset(name)
    col = LocalCollective(params, 3, rotations=[1], measure_bytes=False)
    ctx, cc = col.context, col.context.cc
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, ctx.slots), rng.uniform(-1, 1, ctx.slots)
    a, b = col.encrypt(x), col.encrypt(y)
    pending = cc.EvalMult(a, 1.0)  # pending rescale: the next product pays for it
    low = a
    for _ in range(params.usable_levels):
        low = cc.EvalMult(low, 1.0)
    p0, p1 = col.parties[0], col.parties[1]
    q = Querier(ctx)
    t: dict[str, float] = {}
    t["encrypt"] = _cpu(lambda: col.encrypt(x), reps)
    t["add"] = _cpu(lambda: cc.EvalAdd(a, b), reps)
    t["mult ct x ct + relin + rescale"] = _cpu(lambda: cc.EvalMult(pending, b), reps)
    t["rotate"] = _cpu(lambda: cc.EvalRotate(a, 1), reps)
    req = refresh.prepare(ctx, [low])
    t["refresh: aggregator prepare (adjust scale, CRP)"] = _cpu(lambda: refresh.prepare(ctx, [low]), reps)
    t["refresh: share per party"] = _cpu(lambda: refresh.gen_share(p1, req), reps)
    shares = [refresh.gen_share(p, req) for p in col.parties]
    t["refresh: aggregator combine (add + re-encrypt)"] = _cpu(
        lambda: refresh.finalize(ctx, req, fold(ctx, refresh.aggregate, shares, ProtocolKind.REFRESH)), reps)
    t["refresh: total, 3 parties"] = (t["refresh: aggregator prepare (adjust scale, CRP)"]
                                      + 3 * t["refresh: share per party"]
                                      + t["refresh: aggregator combine (add + re-encrypt)"])
    t["decryption share, flooded (per party)"] = _cpu(lambda: decryption.gen_share(p1, [a]), reps)
    t["decryption share, unflooded (per party)"] = _cpu(lambda: decryption.gen_share(p1, [a], flood=False), reps)
    dshares = [decryption.gen_share(p, [a]) for p in col.parties]
    t["decryption fusion"] = _cpu(lambda: decryption.finalize(
        ctx, fold(ctx, decryption.aggregate, dshares, ProtocolKind.DECRYPTION)), reps)
    t["key switch: share per party (flooded)"] = _cpu(lambda: key_switch.gen_share(p1, [a], q.public_key), reps)
    kshares = [key_switch.gen_share(p, [a], q.public_key) for p in col.parties]

    def key_switch_sum() -> list:
        return key_switch.finalize(ctx, fold(ctx, key_switch.aggregate, kshares, ProtocolKind.KEY_SWITCH))

    t["key switch: aggregator sum"] = _cpu(key_switch_sum, reps)
    switched = key_switch_sum()
    t["key switch: querier decrypt"] = _cpu(lambda: q.decrypt(switched), reps)

    err = {
        "threshold decryption (flooded, 3 parties)": float(np.abs(col.decrypt([a])[0] - x).max()),
        "refresh then decryption": float(np.abs(col.decrypt(col.refresh([low]))[0] - x).max()),
        "querier after key switch": float(np.abs(q.decrypt(switched)[0] - x).max()),
    }

    sizes = {
        "context (CryptoContext + joint public key)": len(S.context_to_bytes(ctx)),
        "public key (joint or share)": len(S.public_key_to_bytes(ctx, ctx.public_key)),
        "secret share": len(p1.secret_bytes()),
        "ciphertext, level 0": len(S.ciphertexts_to_bytes(ctx, [a])),
        "ciphertext, all usable levels used (3 towers)": len(S.ciphertexts_to_bytes(ctx, [low])),
        "decryption share, level 0": len(dshares[1].to_bytes(ctx)),
        "key-switch share, level 0": len(kshares[1].to_bytes(ctx)),
        "refresh request (c1 + CRP) per ciphertext": len(req.to_bytes(ctx)),
        "refresh share (pair) per ciphertext": len(shares[1].to_bytes(ctx)),
        "relinearization key share (round 1 / round 2 alike)": len(relin.gen_crp(p0).to_bytes(ctx)),
        "rotation-key share, one rotation": len(rotation.gen_crp(p0, [3]).to_bytes(ctx)),
        "joint evaluation keys (relin + 1 rotation)": len(S.eval_keys_to_bytes(ctx)),
    }
    return {"params": params.to_dict(), "times_ms": t, "errors": err, "sizes": sizes,
            "reveal_precision_bits": params.reveal_precision_bits, "usable_levels": params.usable_levels}


def keygen_child(name: str, n: int, rotations: list[int]) -> dict:
    """Key generation for ``n`` parties in this (fresh) process: CPU time, peak and retained memory."""
    params = preset(name)
    from rhode.mhe import MheContext
    MheContext(params)  # the CryptoContext alone, for the baseline
    _trim()
    base = _rss_mib()
    t = time.process_time()
    col = LocalCollective(params, n, rotations=rotations, measure_bytes=False)
    cpu = time.process_time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _trim()
    held = _rss_mib() - base
    cc, tag = col.context.cc, col.context.key_tag
    keys = len(S.eval_keys_to_bytes(col.context)) / 2**20
    return {"n": n, "keygen_s": cpu, "peak_rss_mib": peak, "base_rss_mib": base,
            "retained_mib": held, "eval_keys_mib": keys,
            "rotation_tags": len(cc.GetAllEvalAutomorphismKeys()), "relin_tags": len(cc.GetAllEvalMultKeys()),
            "rotation_keys": len(cc.GetExistingEvalAutomorphismKeyIndices(tag))}


def run_keygen(name: str, n: int, rotations: list[int]) -> dict:
    cmd = [sys.executable, __file__, "--keygen-child", name, str(n), ",".join(map(str, rotations))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ["OMP_NUM_THREADS"]))
    if proc.returncode != 0:
        raise RuntimeError(f"key generation child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f}"


def write_report(out: Path, ops: dict, keygen: dict, quick: bool, elapsed: float) -> None:
    from importlib.metadata import version
    names = list(ops)
    lines = [
        "# Benchmark: multiparty CKKS layer (`rhode.mhe`)",
        "",
        f"Written by `bench/mhe_ops.py{' --quick' if quick else ''}` on "
        f"{datetime.date.today().isoformat()} in {elapsed / 60:.1f} min.",
        f"Machine: {_machine()}. OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}. "
        f"openfhe {version('openfhe')}, Python {platform.python_version()}.",
        "Times are medians of process-CPU time (one thread, so they do not count waiting for the other",
        "agents sharing the machine), in milliseconds, for one full-slot ciphertext; 3 parties in one",
        "process. Sizes are framed BINARY bytes, in MiB.",
        "",
        "## Presets",
        "",
        "| preset | ring | depth | usable levels | scale bits | log Q | secure | reveal precision (bits) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        p = ops[n]["params"]
        lines.append(f"| {n} | 2^{int(np.log2(p['ring_dim']))} | {p['depth']} | {ops[n]['usable_levels']} | "
                     f"{p['scale_bits']} | {p['first_mod_bits'] + p['depth'] * p['scale_bits']} | "
                     f"{'128-bit' if p['secure'] else 'no (tests only)'} | "
                     f"{ops[n]['reveal_precision_bits']:.1f} |")
    lines += ["", "## Operation and protocol-step times [ms]", "",
              "| operation | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in ops[names[0]]["times_ms"]:
        lines.append(f"| {k} | " + " | ".join(f"{ops[n]['times_ms'][k]:.2f}" for n in names) + " |")
    lines += ["", "Maximum absolute error for values in [-1, 1] (noise flooding included):", "",
              "| result | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in ops[names[0]]["errors"]:
        lines.append(f"| {k} | " + " | ".join(f"{ops[n]['errors'][k]:.1e}" for n in names) + " |")
    lines += ["", "## Serialized sizes [MiB]", "",
              "| object | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in ops[names[0]]["sizes"]:
        lines.append(f"| {k} | " + " | ".join(_mib(ops[n]["sizes"][k]) for n in names) + " |")
    lines += ["", "## Collective key generation", "",
              f"Public key, relinearization key (2 rounds) and {len(ROTATIONS)} rotation keys "
              f"({', '.join(map(str, ROTATIONS))}), all N parties and the aggregator in one fresh process. "
              "*Peak* is the process's maximum resident memory (all parties' shares are alive during "
              "key generation, so it grows with N); *retained* is the resident memory left after key "
              "generation beyond the bare CryptoContext (after freeing the shares): the joint public "
              "and evaluation keys plus N secret shares. It stays flat in N because the evaluation keys "
              "are held once per process under the joint tag (one tag in OpenFHE's rotation and "
              "relinearization maps), not once per party.", "",
              "| preset | N | key generation CPU [s] | peak RSS [MiB] | retained [MiB] | "
              "serialized joint eval keys [MiB] | if every party held a copy [MiB] | "
              "key tags (rotation / relin) |",
              "|---|---|---|---|---|---|---|---|"]
    for n in keygen:
        for r in keygen[n]:
            lines.append(f"| {n} | {r['n']} | {r['keygen_s']:.2f} | {r['peak_rss_mib']:.0f} | "
                         f"{r['retained_mib']:.0f} | {r['eval_keys_mib']:.1f} | "
                         f"{r['n'] * r['eval_keys_mib']:.0f} | {r['rotation_tags']} / {r['relin_tags']} |")
    for n in keygen:
        rows = keygen[n]
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            slope_t = (b["keygen_s"] - a["keygen_s"]) / (b["n"] - a["n"])
            slope_m = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["n"] - a["n"])
            lines.append(f"\n{n}: each further party adds about {slope_t:.2f} s of key generation and "
                         f"{slope_m:.0f} MiB of peak memory.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="test preset only, fewer repetitions")
    ap.add_argument("--presets", default=None, help="comma-separated presets (default: all three)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "mhe.md")
    ap.add_argument("--keygen-child", nargs=3, metavar=("PRESET", "N", "ROTATIONS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.keygen_child:
        name, n, rots = args.keygen_child
        print(json.dumps(keygen_child(name, int(n), [int(r) for r in rots.split(",")])))
        return
    names = args.presets.split(",") if args.presets else (["test"] if args.quick else
                                                          ["test", "default", "deep"])
    reps = 3 if args.quick else 7
    start = time.time()
    ops, keygen = {}, {}
    for name in names:
        print(f"[{name}] operations ...", flush=True)
        ops[name] = bench_ops(name, reps)
        keygen[name] = []
        for n in (2, 4, 8):
            print(f"[{name}] key generation, N={n} ...", flush=True)
            keygen[name].append(run_keygen(name, n, list(ROTATIONS)))
    write_report(args.out, ops, keygen, args.quick, time.time() - start)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
