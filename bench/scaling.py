"""Scaling study and performance budget of encrypted federated training (issue 7).

Writes docs/benchmarks/scaling.md, scaling.json and scaling.png (+ scaling_ops.png):

1. Sweep, one factor at a time around a base configuration (data holders N, timesteps T, features d,
   hidden units h), RNN and GRU: process CPU time of one global iteration of the sequential
   in-process engine (``Federation(..., workers=1)``: ``Aggregator.iteration`` without the loss, i.e.
   every holder's local-training job with the collective refresh rounds, FedAvg and the refresh of
   the new global model; median of --reps iterations), its operation counts (the aggregator's and
   every holder's jobs'), and least-squares exponents on log-log axes.
2. Profile of one global iteration of the base configuration: cProfile hot spots (in the main thread
   and in every holder's job thread), and the share of the iteration's CPU time spent inside OpenFHE
   calls (every call on the CryptoContext and every module-level openfhe function is timed by a thin
   wrapper).
3. Parallel engine (``Federation(..., workers=W)``: the data holders in W worker processes,
   rhode.federated.workers) vs the sequential engine at N = 4: wall time per global iteration, same
   data and seed, decrypted models compared.
4. Encrypted vs plaintext mirror (same polynomials): time per global iteration of each, and the ratio.
5. Refresh batching in-process: the cipher backends' eager margin 2 vs off.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scaling.py [--quick] [--reps 3] [--jobs 2]

The sweep uses the insecure `test` preset (ring 2^13) so that it finishes in reasonable time on two
cores; one local step of batch 8 per holder per iteration. Times are process CPU seconds (the sum over
processes where several run); only the parallel comparison, which is about wall time, uses wall time.
Key generation (one per federation) is not part of any timed iteration.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks"
PRESET = "test"
BATCH = 8
ROWS = 32
SEED = 1
LEARNING_RATE = 0.5
BASE = {"N": 2, "T": 4, "d": 4, "h": 8}
SWEEP = {"N": (2, 4, 8, 16), "T": (4, 8, 16, 32), "d": (1, 4, 16, 64), "h": (4, 8, 16, 32)}
QUICK = {"N": (2, 4), "T": (4, 8), "d": (4, 16), "h": (4, 8)}
TARGETS = {"N": (0.8, 1.2), "T": (0.8, 1.2), "d": (None, 0.7), "h": (None, 1.6)}
OPS = ("rotations", "ct_ct_mults", "ct_pt_mults", "const_mults", "relinearizations", "additions",
       "refreshes", "refreshed_ciphertexts")
PARALLEL_N = 4


# ----------------------------------------------------------------------------------------------------
# set-up shared by every part
def run_config(cell: str, point: dict):
    """The run configuration of one point (``point``: N, T, d, h): one local step of batch BATCH,
    SGD with the degree-5 tanh clip, tanh of degree 7 on [-2.5, 2.5], the test preset."""
    from rhode.federated.config import RunConfig
    return RunConfig(data=tuple(f"synthetic-{i}" for i in range(point["N"])), cell=cell, hidden=point["h"],
                     timesteps=point["T"], horizon=1, batch=BATCH, learning_rate=LEARNING_RATE, local_steps=1,
                     clip="tanh", clip_value=1.0, tanh_interval=2.5, tanh_degree=7, preset=PRESET,
                     seed=SEED).validate()


def synthetic_series(n: int, T: int, d: int, seed: int = SEED) -> list:
    """n data holders' training series of ROWS + T rows (ROWS windows of T timesteps, horizon 1):
    d features uniform in [-1, 1] and a target 'y' (not a feature) uniform in [-0.8, 0.8]. The holders
    normalize them with the encrypted global statistics, as in a run."""
    from rhode.data import TimeSeries
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(d)]
    return [TimeSeries.from_arrays(rng.uniform(-1, 1, (ROWS + T, d)), names, "y",
                                   target=rng.uniform(-0.8, 0.8, ROWS + T), source=f"synthetic-{i}")
            for i in range(n)]


def time_refresh(agg) -> list[float]:
    """Count the CPU seconds this process spends in the aggregator's refresh rounds (request, every
    holder's shares where the holders run in this process, combining, re-encryption) in the returned
    one-element list. Call before key generation, so that the aggregator's backend takes it too."""
    spent = [0.0]
    real = agg.refresh_round

    def refresh_round(cts):
        t0 = time.process_time()
        try:
            return real(cts)
        finally:
            spent[0] += time.process_time() - t0
    agg.refresh_round = refresh_round
    return spent


class BenchFederation:
    """One in-process :class:`~rhode.federated.engine.Federation` over synthetic holders: keys and
    global statistics made (not timed as an iteration), the initial model encrypted, the refresh
    rounds timed (:func:`time_refresh`). ``point``: N, T, d, h."""

    def __init__(self, cell: str, point: dict, workers: int = 1, margin: int | None = None,
                 measure_bytes: bool = False) -> None:
        from rhode.federated.engine import Federation
        self.point = dict(point)
        self.cfg = run_config(cell, point)
        self.series = synthetic_series(point["N"], point["T"], point["d"])
        t0 = time.perf_counter()
        self.fed = Federation(self.cfg, self.series, workers=workers, margin=margin, measure_bytes=measure_bytes)
        self.start_seconds = time.perf_counter() - t0  # worker processes: spawn, import, ready
        try:
            self.agg = self.fed.agg
            self.refresh_cpu = time_refresh(self.agg)
            t0 = time.perf_counter()
            self.stats = self.fed.keygen()
            self.keygen_seconds = time.perf_counter() - t0
            self.params = self.agg.encrypt_model(self.agg.model.init_params(self.cfg.seed))
        except BaseException:
            self.fed.close()
            raise
        self.it = 0
        self.rounds: list = []  # the last iteration's rounds
        self.ops: dict = {}     # its operation counts

    def __enter__(self) -> BenchFederation:
        return self

    def __exit__(self, *exc) -> None:
        self.fed.close()

    def step(self):
        """One global iteration without the loss; returns its IterationRecord. Sets ``rounds`` and
        ``ops`` (operation counts of the aggregator and every holder's jobs; refreshes = refresh
        rounds of the protocol, each for every holder's pending ciphertexts at once)."""
        r0, before = len(self.fed.transport.rounds), self.fed.operation_counts()
        self.params, rec = self.agg.iteration(self.it, self.params, self.stats, loss=False)
        self.it += 1
        after = self.fed.operation_counts()
        self.rounds = self.fed.transport.rounds[r0:]
        self.ops = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        self.ops.update(refreshes=rec.refresh_rounds, refreshed_ciphertexts=rec.refreshed_ciphertexts)
        return rec

    def decrypt(self) -> dict:
        return self.agg.decrypt_model(self.params)


def timed_step(b: BenchFederation) -> tuple:
    """(record, CPU s, wall s, refresh CPU s) of one global iteration of ``b`` (CPU of this process)."""
    s0, c0, w0 = b.refresh_cpu[0], time.process_time(), time.perf_counter()
    rec = b.step()
    return rec, time.process_time() - c0, time.perf_counter() - w0, b.refresh_cpu[0] - s0


def refresh_requests(rounds) -> int:
    """Refresh requests merged into the REFRESH rounds of ``rounds``: the holders paused for a round
    (the parties of the RESUME round after it), or 1 for a round no holder waits on (the aggregator's
    refresh of the new global model)."""
    from rhode.federated.schema import Step
    n = 0
    for r, nxt in zip(rounds, list(rounds[1:]) + [None]):
        if r.step == Step.REFRESH.value:
            n += len(nxt.sent) if nxt is not None and nxt.step == Step.RESUME.value else 1
    return n


def process_cpu_seconds(pids) -> float:
    """User + system CPU seconds of the processes ``pids`` so far (Linux: /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


# ----------------------------------------------------------------------------------------------------
# 1. sweep
def sweep_job(job: tuple) -> list[dict]:
    """All values of one factor for one cell (runs in a pool process); one federation (keys made
    once, not timed) per value."""
    cell, factor, values, reps = job
    rows = []
    for v in values:
        point = dict(BASE, **{factor: v})
        with BenchFederation(cell, point) as b:
            cpu, wall, refresh = [], [], []
            for _ in range(reps):
                _, c, w, r = timed_step(b)
                cpu.append(c)
                wall.append(w)
                refresh.append(r)
            pl, ops = b.agg.backend.plan, b.ops
        row = {"cell": cell, "factor": factor, "value": v, **point, "reps": reps, "H": pl.H, "chunk": pl.c,
               "ciphertexts_per_batch_tensor": pl.n_chunks(BATCH),
               "rotation_keys": len(pl.rotation_indices()),
               "cpu_seconds": [round(x, 3) for x in cpu], "wall_seconds": [round(x, 3) for x in wall],
               "median_cpu_seconds": round(statistics.median(cpu), 3),
               "refresh_cpu_seconds": [round(x, 3) for x in refresh],
               "median_refresh_cpu_seconds": round(statistics.median(refresh), 3),
               "operations": {k: ops.get(k, 0) for k in OPS}}
        print(f"  {cell} {factor}={v}: {row['median_cpu_seconds']:.2f} s CPU (H={pl.H}, c={pl.c}, "
              f"rot={row['operations']['rotations']}, refreshed={row['operations']['refreshed_ciphertexts']})",
              flush=True)
        rows.append(row)
    return rows


def fit_exponent(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def run_sweep(cells, sweep, reps: int, jobs: int, partial: Path, resume: bool) -> list[dict]:
    """Rows of every (cell, factor) job; each finished job is appended to ``partial`` (JSON lines)
    so that an interrupted run can go on with ``--resume``."""
    done: list[dict] = []
    if resume and partial.exists():
        done = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
        done = [r for r in done if r["reps"] == reps]
    elif partial.exists():
        partial.unlink()
    have = {(r["cell"], r["factor"]) for r in done}
    work = [(c, f, vals, reps) for c in cells for f, vals in sweep.items() if (c, f) not in have]
    rows = list(done)

    def keep(job_rows: list[dict]) -> None:
        rows.extend(job_rows)
        with partial.open("a") as fh:
            for r in job_rows:
                fh.write(json.dumps(r) + "\n")

    # most expensive first (GRU, then the factors whose largest value costs most)
    cost = {"d": 4, "N": 3, "T": 2, "h": 1}
    work.sort(key=lambda j: -(3 if j[0] == "gru" else 1) * cost[j[1]])
    if jobs <= 1 or len(work) <= 1:
        for j in work:
            keep(sweep_job(j))
    else:
        with mp.get_context("spawn").Pool(min(jobs, len(work))) as pool:
            for job_rows in pool.imap_unordered(sweep_job, work):
                keep(job_rows)
    return rows


# ----------------------------------------------------------------------------------------------------
# 2. profile
class _Clock:
    """CPU seconds spent inside OpenFHE calls, per function name."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()

    def wrap(self, name: str, fn):
        seconds, calls, clock = self.seconds, self.calls, time.process_time

        def openfhe_call(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - t0
                calls[name] += 1
        return openfhe_call


class _TimedContext:
    """Stands in for an OpenFHE CryptoContext: every method call is timed by ``clock``."""

    def __init__(self, cc, clock: _Clock) -> None:
        self._cc, self._clock = cc, clock

    def __getattr__(self, name: str):
        attr = getattr(self._cc, name)
        return self._clock.wrap(f"CryptoContext.{name}", attr) if callable(attr) else attr


@contextlib.contextmanager
def _openfhe_timed(ctx, clock: _Clock):
    """While inside, every call on ``ctx``'s CryptoContext (through ``ctx.cc`` and through every
    Evaluator on it: the aggregator's backend and each holder's) and every module-level openfhe
    function is timed by ``clock``."""
    import openfhe

    from rhode.mhe.evaluator import Evaluator
    real_cc = ctx.cc
    timed = _TimedContext(real_cc, clock)
    evaluators = [o for o in gc.get_objects() if isinstance(o, Evaluator) and o.cc is real_cc]
    patched = {name: getattr(openfhe, name) for name in dir(openfhe)
               if name[0].isupper() and callable(getattr(openfhe, name))
               and not isinstance(getattr(openfhe, name), type)}
    ctx.cc = timed
    for ev in evaluators:
        ev.cc = timed
    for name, fn in patched.items():
        setattr(openfhe, name, clock.wrap(f"openfhe.{name}", fn))
    try:
        yield
    finally:
        ctx.cc = real_cc
        for ev in evaluators:
            ev.cc = real_cc
        for name, fn in patched.items():
            setattr(openfhe, name, fn)


@contextlib.contextmanager
def _profiled_jobs(profiles: list):
    """A holder's training runs in a job thread (rhode.federated.job.Job), which a cProfile profiler
    enabled in this thread does not see: every job started inside gets its own profiler, appended to
    ``profiles``; on exit the job threads are joined (their profilers stopped)."""
    from rhode.federated.job import Job
    real = Job.run
    threads: list[threading.Thread] = []

    def run(self) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        threads.append(self)
        prof.enable()
        try:
            real(self)
        finally:
            prof.disable()
    Job.run = run
    try:
        yield
    finally:
        Job.run = real
        for t in threads:
            t.join(timeout=60)


def _hot_spots(st: pstats.Stats) -> list[dict]:
    """The Python rows of a profile by self time: without the timed OpenFHE calls themselves (the
    wrapper and, for module-level functions, the builtin it calls), the instrumentation (wrapper,
    proxy, clock reads) and a thread waiting for the other (lock acquire: the aggregator waits while a
    holder's job computes, and the job while the aggregator runs a refresh round)."""
    rows = []
    for (path, line, fn), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():
        where = f"{Path(path).name}:{line}({fn})" if path != "~" else fn
        if (fn == "openfhe_call" or where.startswith("<built-in method openfhe.") or where.startswith("scaling.py")
                or "process_time" in where or "_thread.lock" in where):
            continue
        rows.append({"function": where, "calls": ncalls, "self_seconds": round(tottime, 4),
                     "cumulative_seconds": round(cumtime, 4)})
    return sorted(rows, key=lambda r: -r["self_seconds"])[:12]


def profile_base(cell: str) -> dict:
    """One global iteration of the base configuration under cProfile, with OpenFHE calls timed."""
    with BenchFederation(cell, BASE, measure_bytes=True) as b:
        b.step()  # warm-up (lazy plans, first encodings, the holders' backends)
        clock, job_profiles, prof = _Clock(), [], cProfile.Profile()
        with _openfhe_timed(b.agg.ctx, clock), _profiled_jobs(job_profiles):
            c0 = time.process_time()
            prof.enable()
            b.step()
            prof.disable()
            total = time.process_time() - c0
    inside = sum(clock.seconds.values())
    st = pstats.Stats(prof)
    for p in job_profiles:
        st.add(p)
    calls = sorted(({"function": k, "calls": clock.calls[k], "seconds": round(v, 4)}
                    for k, v in clock.seconds.items()), key=lambda r: -r["seconds"])
    return {"cell": cell, "config": BASE, "cpu_seconds": round(total, 3),
            "openfhe_seconds": round(inside, 3), "openfhe_share": round(inside / total, 4),
            "openfhe_calls": calls[:12], "openfhe_calls_all": calls, "python_hot_spots": _hot_spots(st),
            "job_threads_profiled": len(job_profiles)}


# ----------------------------------------------------------------------------------------------------
# 3. parallel vs sequential
def _parallel_runs(cell: str, reps: int, worker_counts) -> tuple:
    """The sequential engine and one parallel engine per worker count at N = PARALLEL_N, iterations
    alternating. Returns (sequential {wall, cpu}, {workers: {wall, cpu, start, ...}}, load averages,
    decrypted sequential model, {workers: decrypted model})."""
    point = dict(BASE, N=PARALLEL_N)
    seq, par, loads = {"wall": [], "cpu": []}, {}, []
    with contextlib.ExitStack() as stack:
        seq["bench"] = stack.enter_context(BenchFederation(cell, point))
        for w in worker_counts:
            before = {p.pid for p in mp.active_children()}
            b = stack.enter_context(BenchFederation(cell, point, workers=w))
            par[w] = {"bench": b, "pids": [p.pid for p in mp.active_children() if p.pid not in before],
                      "wall": [], "cpu": [], "worker_cpu": [], "start": b.start_seconds, "keys": b.keygen_seconds}
        for _ in range(reps):
            loads.append(os.getloadavg()[0])
            _, cpu, wall, _ = timed_step(seq["bench"])
            seq["wall"].append(wall)
            seq["cpu"].append(cpu)
            for p in par.values():
                k0 = process_cpu_seconds(p["pids"])
                _, cpu, wall, _ = timed_step(p["bench"])
                workers_cpu = process_cpu_seconds(p["pids"]) - k0
                p["wall"].append(wall)
                p["worker_cpu"].append(workers_cpu)
                p["cpu"].append(cpu + workers_cpu)  # parent (aggregator) + workers (holders)
                p["requests"], p["rounds"] = refresh_requests(p["bench"].rounds), p["bench"].ops["refreshes"]
        seq["requests"], seq["rounds"] = refresh_requests(seq["bench"].rounds), seq["bench"].ops["refreshes"]
        a = seq["bench"].decrypt()
        decrypted = {w: p["bench"].decrypt() for w, p in par.items()}
    return seq, par, loads, a, decrypted


def parallel_vs_sequential(cell: str, reps: int, worker_counts=(PARALLEL_N, 2)) -> list[dict]:
    """Sequential engine (``workers=1``) vs the parallel engine with each of ``worker_counts`` worker
    processes, iterations alternating in the same run (same data, seed, starting model; each engine
    its own keys); one row per worker count."""
    seq, par, loads, a, decrypted = _parallel_runs(cell, reps, worker_counts)
    ms = statistics.median(seq["wall"])
    rows = []
    for w in worker_counts:
        b, p = decrypted[w], par[w]
        diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
        mp_ = statistics.median(p["wall"])
        rows.append({"cell": cell, "N": PARALLEL_N, "workers": w, "config": dict(BASE, N=PARALLEL_N),
                     "sequential_wall_seconds": [round(x, 3) for x in seq["wall"]],
                     "parallel_wall_seconds": [round(x, 3) for x in p["wall"]],
                     "sequential_cpu_seconds": [round(x, 3) for x in seq["cpu"]],
                     "parallel_cpu_seconds": [round(x, 3) for x in p["cpu"]],
                     "parallel_worker_cpu_seconds": [round(x, 3) for x in p["worker_cpu"]],
                     "speedup": round(ms / mp_, 3), "worker_start_seconds": round(p["start"], 2),
                     "keygen_seconds": round(p["keys"], 2),
                     "refresh_requests_last": p["requests"], "refresh_rounds_last": p["rounds"],
                     "sequential_refresh_requests_last": seq["requests"],
                     "sequential_refresh_rounds_last": seq["rounds"],
                     "max_abs_weight_diff": diff, "load_average_1min": loads})
        print(f"  {cell} N={PARALLEL_N}, {w} workers: sequential {ms:.2f} s, parallel {mp_:.2f} s wall -> "
              f"{ms / mp_:.2f}x (refresh requests {p['requests']} in {p['rounds']} rounds), "
              f"|diff| {diff:.1e}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------
# 4. encrypted vs mirror
def encrypted_vs_mirror(cell: str, reps: int) -> dict:
    """``reps`` iterations of the sequential engine, then the plaintext mirror's on the holders'
    normalized windows (``rhode.nn.fedavg.train_federated``, what rhode.federated.mirror.plain_fedavg
    runs), each iteration timed."""
    from rhode.data import Normalizer, make_windows
    from rhode.federated.config import model_configs
    from rhode.nn.fedavg import train_federated
    e_cpu, e_wall = [], []
    with BenchFederation(cell, BASE) as b:
        norm, model = Normalizer.from_stats(b.stats), b.agg.model
        parties = [make_windows(norm.normalize(s), b.cfg.timesteps, b.cfg.horizon) for s in b.series]
        _, _, train = model_configs(b.cfg, BASE["d"])
        for _ in range(reps):
            _, cpu, wall, _ = timed_step(b)
            e_cpu.append(cpu)
            e_wall.append(wall)
        dec = b.decrypt()
    marks = [(time.process_time(), time.perf_counter())]
    plain = train_federated(model, train, parties, global_iterations=reps, seed=b.cfg.seed,
                            weights=[float(X.shape[0]) for X, _ in parties],
                            on_iteration=lambda k, rec: marks.append((time.process_time(), time.perf_counter()))
                            ).params
    m_cpu = [y[0] - x[0] for x, y in zip(marks, marks[1:])]
    m_wall = [y[1] - x[1] for x, y in zip(marks, marks[1:])]
    diff = max(float(np.max(np.abs(dec[k] - plain[k]))) for k in dec)
    ratio = statistics.median(e_cpu) / statistics.median(m_cpu)
    print(f"  {cell}: encrypted {statistics.median(e_cpu):.2f} s, mirror {statistics.median(m_cpu) * 1e3:.2f} ms "
          f"CPU per iteration -> {ratio:.0f}x; |encrypted - mirror| = {diff:.1e}", flush=True)
    return {"cell": cell, "config": BASE,
            "encrypted_cpu_seconds": [round(x, 4) for x in e_cpu],
            "encrypted_wall_seconds": [round(x, 4) for x in e_wall],
            "mirror_cpu_seconds": [round(x, 6) for x in m_cpu],
            "mirror_wall_seconds": [round(x, 6) for x in m_wall],
            "ratio_cpu": round(ratio, 1),
            "ratio_wall": round(statistics.median(e_wall) / statistics.median(m_wall), 1),
            "max_abs_weight_diff": diff}


# ----------------------------------------------------------------------------------------------------
# 5. refresh batching in-process: eager margin 2 (what a deployment uses) vs off (the engine's default)
def eager_margin_effect(cell: str, N: int) -> dict:
    """Refreshed ciphertexts and CPU of one global iteration with the cipher backends' opportunistic
    refresh batching (``Federation(..., margin=2)``, the aggregator's and every holder's backend) and
    without it (``margin=None``, the in-process engine's default)."""
    out = {"cell": cell, "N": N}
    for margin in (2, None):
        with BenchFederation(cell, dict(BASE, N=N), margin=margin) as b:
            rec, cpu, _, refresh = timed_step(b)
        out[str(margin)] = {"cpu_seconds": round(cpu, 3), "refresh_cpu_seconds": round(refresh, 3),
                            "refresh_rounds": rec.refresh_rounds,
                            "refreshed_ciphertexts": rec.refreshed_ciphertexts}
    print(f"  {cell} N={N}: eager 2 {out['2']}, off {out['None']}", flush=True)
    return out


# ----------------------------------------------------------------------------------------------------
# output
def exponents(rows: list[dict], cells) -> dict:
    out: dict[str, dict] = {}
    for f in SWEEP:
        out[f] = {}
        for c in cells:
            pts = sorted((r["value"], r["median_cpu_seconds"]) for r in rows if r["cell"] == c and r["factor"] == f)
            if len(pts) >= 2:
                out[f][c] = round(fit_exponent(*zip(*pts)), 3)
    return out


def plot(rows, cells, expo, path_time: Path, path_ops: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"rnn": "tab:blue", "gru": "tab:orange", "lstm": "tab:green"}
    names = {"N": "data holders N", "T": "timesteps T", "d": "features d", "h": "hidden units h"}
    for path, key, ylabel in ((path_time, "median_cpu_seconds", "CPU s / global iteration"),
                              (path_ops, "rotations", "rotations / global iteration")):
        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        for ax, f in zip(axes, SWEEP):
            for c in cells:
                pts = sorted((r["value"], r[key] if key in r else r["operations"][key])
                             for r in rows if r["cell"] == c and r["factor"] == f)
                if not pts:
                    continue
                x, y = map(np.asarray, zip(*pts))
                k = fit_exponent(x, y)
                b = np.mean(np.log(y) - k * np.log(x))
                label = f"{c.upper()} (slope {k:.2f})"
                ax.loglog(x, y, "o", color=colors[c], label=label)
                xx = np.geomspace(x.min(), x.max(), 20)
                ax.loglog(xx, np.exp(b) * xx ** k, "-", color=colors[c], alpha=0.6)
            ax.set_xlabel(names[f])
            ax.set_xticks(SWEEP[f])
            ax.set_xticklabels([str(v) for v in SWEEP[f]])
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel(ylabel)
        base = ", ".join(f"{k} = {v}" for k, v in BASE.items())
        fig.suptitle(f"One global iteration, one factor at a time around {base} (test preset, batch {BATCH})")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
def _rows(res, cell, factor):
    return sorted((r for r in res["sweep"] if r["cell"] == cell and r["factor"] == factor),
                  key=lambda r: r["value"])


def analysis(res: dict) -> list[str]:
    """Why each exponent is what it is, from the measured times and operation counts."""
    cells = sorted({r["cell"] for r in res["sweep"]})
    out = ["## Why the exponents are what they are", ""]
    for c in cells:
        C = c.upper()
        rows = _rows(res, c, "N")
        if len(rows) >= 2:
            xs = [r["value"] for r in rows]
            local = [r["median_cpu_seconds"] - r["median_refresh_cpu_seconds"] for r in rows]
            refr = [r["median_refresh_cpu_seconds"] for r in rows]
            per_ct = [r["median_refresh_cpu_seconds"] / max(1, r["operations"]["refreshed_ciphertexts"])
                      for r in rows]
            share = [f(r) for r in rows for f in (lambda r: r["median_refresh_cpu_seconds"] / r["median_cpu_seconds"],)]
            per_party = [r["median_cpu_seconds"] / r["value"] for r in rows]
            per_party_share, fixed = np.polyfit(np.array(xs, float), np.array(per_ct), 1)
            out += [f"**N ({C}).** Local training and aggregation grow with exponent "
                    f"{fit_exponent(xs, local):.2f}; the collective refreshes with {fit_exponent(xs, refr):.2f}. "
                    "Every holder refreshes about the same number of ciphertexts per step (refreshed per "
                    f"iteration: {', '.join(str(r['operations']['refreshed_ciphertexts']) for r in rows)} at N = "
                    f"{', '.join(map(str, xs))}), and each refresh needs a share from every one of the N parties "
                    f"(CPU per refreshed ciphertext {', '.join(f'{1e3 * v:.0f}' for v in per_ct)} ms, "
                    f"least squares {1e3 * fixed:.1f} ms + {1e3 * per_party_share:.1f} ms x N: scale adjustment, "
                    "CRP and re-encryption once, IntMPBootDecrypt once per party), so the "
                    "in-process total is N x local + N^2 x shares: the refreshes are "
                    f"{', '.join(f'{v:.0%}' for v in share)} of the iteration. This quadratic term is the "
                    "N-out-of-N protocol's, not overhead: in a deployment the parties compute their shares in "
                    "parallel, so each party's work per iteration is its local training + its share of every "
                    f"holder's refreshes, i.e. total / N = {', '.join(f'{v:.1f}' for v in per_party)} s "
                    f"(exponent {fit_exponent(xs, per_party):.2f}).", ""]
        rows = _rows(res, c, "T")
        if len(rows) >= 2:
            xs = np.array([r["value"] for r in rows], float)
            ys = np.array([r["median_cpu_seconds"] for r in rows])
            b, a = np.polyfit(xs, ys, 1)
            rot = [r["operations"]["rotations"] for r in rows]
            out += [f"**T ({C}).** CPU = {a:.2f} s + {b:.3f} s x T (least squares): the per-timestep work "
                    "(forward affine, activations, BPTT) is linear in T; the fixed part is the per-step work on "
                    "every parameter (batch reductions, transpositions, clip polynomials, update, FedAvg), "
                    f"{a / ys[0]:.0%} of the time at T = {int(xs[0])}. Rotations: "
                    f"{', '.join(map(str, rot))}.", ""]
        rows = _rows(res, c, "d")
        if len(rows) >= 2:
            out += [f"**d ({C}).** Features are padded into the H x H block with H = max(d, h): "
                    + "; ".join(f"d = {r['value']}: H = {r['H']}, c = {r['chunk']}, {r['ciphertexts_per_batch_tensor']} "
                                f"ct/tensor, {r['operations']['rotations']} rotations, {r['median_cpu_seconds']:.1f} s"
                                for r in rows)
                    + ". The cost is flat while d <= h; beyond, each product needs log2 H rotations and "
                    "once H^2 x 8 exceeds the 4096 slots a batch spans several ciphertexts.", ""]
        rows = _rows(res, c, "h")
        if len(rows) >= 2:
            out += [f"**h ({C}).** H^2 slots per sample: the chunk shrinks as h grows ("
                    + "; ".join(f"h = {r['value']}: H = {r['H']}, c = {r['chunk']}, "
                                f"{r['ciphertexts_per_batch_tensor']} ct/tensor, {r['operations']['rotations']} rot, "
                                f"{r['operations']['ct_pt_mults']} ct x pt, {r['median_cpu_seconds']:.1f} s"
                                for r in rows)
                    + "): products cost log2 H rotations per ciphertext, a transposition ~2 sqrt(2H) "
                    "rotations and 2H - 1 masks per weight; the h^2 weights themselves fit in one ciphertext "
                    "per parameter, so the cost grows far slower than h^2.", ""]
    return out


def profile_notes(res: dict) -> list[str]:
    out = ["### Hot spots outside the homomorphic operations", ""]
    for p in res["profile"]:
        tot = p["cpu_seconds"]
        ser = sum(c["seconds"] for c in p["openfhe_calls_all"] if c["function"] == "openfhe.Serialize")
        calls = sum(c["calls"] for c in p["openfhe_calls_all"] if c["function"] == "openfhe.Serialize")
        top = p["python_hot_spots"][:2]
        py = tot - p["openfhe_seconds"]
        out.append(f"* {p['cell'].upper()}: Python around OpenFHE is {py:.2f} s ({py / tot:.1%}); its two largest "
                   "self-time entries are "
                   + " and ".join(f"`{h['function']}` ({h['self_seconds']:.3f} s, {h['self_seconds'] / tot:.1%})"
                                  for h in top)
                   + f". Inside OpenFHE but not homomorphic work: `Serialize` for byte accounting, {calls} calls, "
                   f"{ser:.3f} s ({ser / tot:.1%}).")
    out += ["",
            "1. **Byte accounting** (the largest non-homomorphic cost in the first profile: `Serialize` of "
            "every share only to take its length, 2.7 % of the RNN iteration): share sizes are cached per "
            "(kind of share, modulus chain, level, number of elements) (`rhode.federated.codec.nbytes`), and "
            "the in-process transport (`measure_bytes=True`) sizes every message from them without "
            "serializing it, which leaves the few `Serialize` calls above.",
            "2. **Python wrappers and counters** (`Evaluator` methods, the cipher backend's per-operation "
            "counter scopes, level checks, the power-basis recursion): each well under 1 % of the iteration; "
            "they are kept because they carry the operation counters and level management, and removing "
            "them would save less than the run-to-run noise.",
            "",
            "The remaining >95 % is rotations, products (with relinearization) and the refresh protocol, "
            "i.e. the homomorphic work itself; the way to go faster is fewer of them (packing) or more cores "
            "(the parallel engine below)."]
    return out

def _fmt_target(f: str) -> str:
    lo, hi = TARGETS[f]
    return f"[{lo}, {hi}]" if lo is not None else f"< {hi}"


def _ok(f: str, v: float) -> str:
    lo, hi = TARGETS[f]
    good = (lo is None or v >= lo) and v <= hi
    return "yes" if good else "**no**"



def _md_header(res: dict) -> list[str]:
    meta = res["meta"]
    return [
        "# Scaling study and performance budget",
        "",
        "Generated by `make bench` / `OMP_NUM_THREADS=1 .venv/bin/python bench/scaling.py` (do not edit by "
        f"hand) on {meta['date']}: {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, "
        f"OMP_NUM_THREADS={meta['OMP_NUM_THREADS']} (one thread per process), load average "
        f"{meta['load_average_at_start'][0]} at the start and {meta.get('load_average_at_end', ['?'])[0]} "
        f"at the end (the machine is shared), {meta.get('seconds_total', 0) / 60:.0f} minutes in all"
        + (f"; the sweep ran on {res['meta_sweep']['date']} (load average "
           f"{res['meta_sweep']['load_average_at_start'][0]} at its start, "
           f"{res['meta_sweep'].get('load_average_at_end', ['?'])[0]} at its end, "
           f"{res['meta_sweep'].get('seconds_total', 0) / 60:.0f} minutes, {res['meta_sweep']['sweep_jobs']} "
           "sweep processes at once)" if "meta_sweep" in res else "")
        + "".join(f"; part {part} ran on {date} in an earlier invocation (`--resume` kept it)"
                  for part, date in sorted(res.get("part_dates", {}).items()) if date != meta["date"])
        + ".",
        "",
        f"Set-up: insecure `test` preset (ring 2^13, 4096 slots, depth 10: fast enough for a sweep on two "
        f"cores; it has the same packing and operation counts per ciphertext as the secure presets), "
        "the aggregator and every data holder in one process (the sequential in-process engine "
        "`rhode.federated.engine.Federation(..., workers=1)`; each holder's training is a job in its own "
        "thread, and only one of them computes at a time), "
        f"each holder's series of {meta['windows_per_holder']} + T rows of uniform random values "
        f"({meta['windows_per_holder']} windows) normalized with the encrypted global statistics, one "
        f"local step of batch {meta['batch']} per holder per global iteration, SGD with the degree-5 tanh "
        "clip, tanh of degree 7 on [-2.5, 2.5], FedAvg weighted by the (equal) window counts. Keys are made "
        "once per federation and are not part of any timed iteration. **Time is process CPU seconds** of "
        "one global iteration (`Aggregator.iteration` without the encrypted loss: every holder's local "
        "training job with the collective refresh rounds, FedAvg, and the refresh of the new global model "
        f"to level 0), the median of {meta['reps']} consecutive iterations: wall time on a shared machine "
        "would measure the neighbours. Only the parallel-engine comparison, which is about wall time, "
        "reports wall time.",
        "",
    ]


def _md_sweep(res: dict, base: str) -> list[str]:
    ex = res["exponents"]
    cells = sorted({c for f in ex for c in ex[f]})
    L = ["## Fitted exponents", "",
         f"Least-squares slope of log(CPU time) against log(factor), one factor at a time around "
         f"{base}:", "",
         "| factor | values | " + " | ".join(c.upper() for c in cells) + " | target | met |",
         "|---|---|" + "---|" * len(cells) + "---|---|"]
    for f in SWEEP:
        vals = sorted({r["value"] for r in res["sweep"] if r["factor"] == f})
        if not vals:  # not swept this time (--factors)
            continue
        got = [ex[f].get(c) for c in cells]
        met = all(_ok(f, g) == "yes" for g in got if g is not None)
        L.append(f"| {f} | {', '.join(map(str, vals))} | " + " | ".join(f"{g:.2f}" for g in got)
                 + f" | {_fmt_target(f)} | {'yes' if met else '**no**'} |")
    L += ["", "![CPU time per global iteration](scaling.png)", "",
          "![Rotations per global iteration](scaling_ops.png)", ""]
    L += ["## Sweep", "",
          "H = padded block size (max(d, h, 1) rounded up to a power of two), c = samples per "
          "ciphertext = min(8, 4096 / H^2), cts = ciphertexts per batch tensor = ceil(8 / c). "
          "Operation counts are per global iteration (the aggregator's backend + every holder's training "
          "job); refresh rounds = rounds of the refresh protocol, each taking the ciphertexts pending from "
          "every holder at once (plus one for the new global model); refreshed = ciphertexts refreshed "
          "(each costs one share from every one of the N parties); refresh CPU = CPU time of the "
          "collective refresh rounds (all N parties' shares, combining, re-encryption).",
          "",
          "| cell | factor | value | H | c | cts | CPU s (median) | runs | refresh CPU s | rotations | "
          "ct x ct | ct x pt | const | refresh rounds | refreshed |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["sweep"]:
        o = r["operations"]
        L.append(f"| {r['cell'].upper()} | {r['factor']} | {r['value']} | {r['H']} | {r['chunk']} | "
                 f"{r['ciphertexts_per_batch_tensor']} | {r['median_cpu_seconds']:.2f} | "
                 f"{', '.join(f'{x:.2f}' for x in r['cpu_seconds'])} | {r['median_refresh_cpu_seconds']:.2f} | "
                 f"{o['rotations']} | {o['ct_ct_mults']} | {o['ct_pt_mults']} | {o['const_mults']} | "
                 f"{o['refreshes']} | {o['refreshed_ciphertexts']} |")
    return L + [""] + analysis(res) + [""]


def _md_profile(res: dict, base: str) -> list[str]:
    L = ["## Profile of the base configuration", "",
         f"One global iteration of {base} after one warm-up iteration, under cProfile (in the main thread, "
         "which runs the aggregator and the holders' protocol steps, and in every holder's job thread; "
         "time a thread spends waiting for the other, `_thread.lock.acquire`, is left out of the Python "
         "rows). Every call on the OpenFHE CryptoContext (through the context and through every "
         "`Evaluator` on it: the aggregator's backend and each holder's) and every module-level `openfhe` "
         "function is timed by a thin wrapper (its own cost counts as Python), so the share below is a "
         "lower bound of the time inside OpenFHE. Methods on ciphertext objects (GetLevel, Clone, ...) "
         "count as Python. The federation measures bytes here as `rhode train` does "
         "(`Federation(..., measure_bytes=True)`).", "",
         "| cell | CPU s | inside OpenFHE | share |", "|---|---|---|---|"]
    for p in res["profile"]:
        L.append(f"| {p['cell'].upper()} | {p['cpu_seconds']:.2f} | {p['openfhe_seconds']:.2f} | "
                 f"**{p['openfhe_share']:.1%}** |")
    for p in res["profile"]:
        L += ["", f"{p['cell'].upper()}: OpenFHE calls by CPU time", "",
              "| call | calls | CPU s |", "|---|---|---|"]
        L += [f"| `{c['function']}` | {c['calls']} | {c['seconds']:.3f} |" for c in p["openfhe_calls"][:8]]
        L += ["", f"{p['cell'].upper()}: top Python functions by self time (OpenFHE calls excluded)", "",
              "| function | calls | self s | cumulative s |", "|---|---|---|---|"]
        L += [f"| `{h['function']}` | {h['calls']} | {h['self_seconds']:.3f} | {h['cumulative_seconds']:.2f} |"
              for h in p["python_hot_spots"][:8]]
    return L + [""] + profile_notes(res) + [""]


def _md_parallel(res: dict, base: str) -> list[str]:
    L = ["## Parallel engine", "",
         f"`rhode.federated.engine.Federation(..., workers=W)` at N = {PARALLEL_N} "
         f"({base.replace('N = 2', f'N = {PARALLEL_N}')}): the data holders' jobs (local training, "
         f"the loss) in W worker processes (`rhode.federated.workers.JobWorkers`), with {PARALLEL_N} (one "
         "per data holder: the CLI's default `--workers 0` here, one per holder up to two per core) and "
         "with 2 (one per core; each runs two holders' jobs in turn). A worker holds only the public keys; "
         "the holders' own steps (their refresh and decryption shares) and the aggregator stay in the "
         "parent, which merges the ciphertexts pending from every holder into one refresh round, exactly as the "
         "sequential engine (`workers=1`, every holder in this process) does: both run the same protocol "
         "(`rhode.federated.aggregator.Aggregator`), so they have the same refresh rounds. Each engine "
         "made its own keys; same data, seed and batches, iterations alternating in the same run. "
         "**Wall** seconds per global iteration (the holders' training jobs, FedAvg, the new model "
         "refreshed); CPU = parent (`time.process_time`) + workers (user + system time of the worker "
         "processes, from `/proc/<pid>/stat`).", "",
         "| cell | workers | sequential s | parallel s | speed-up | CPU s seq / par | "
         "refresh requests -> rounds | max weight diff | load avg |",
         "|---|---|---|---|---|---|---|---|---|"]
    for p in res["parallel"]:
        L.append(f"| {p['cell'].upper()} | {p['workers']} | "
                 f"{', '.join(f'{x:.2f}' for x in p['sequential_wall_seconds'])} | "
                 f"{', '.join(f'{x:.2f}' for x in p['parallel_wall_seconds'])} | **{p['speedup']:.2f}x** | "
                 f"{statistics.median(p['sequential_cpu_seconds']):.2f} / "
                 f"{statistics.median(p['parallel_cpu_seconds']):.2f} | "
                 f"{p['refresh_requests_last']} -> {p['refresh_rounds_last']} | "
                 f"{p['max_abs_weight_diff']:.1e} | {', '.join(f'{x:.1f}' for x in p['load_average_1min'])} |")
    starts = ", ".join(f"{p['worker_start_seconds']:.1f}" for p in res["parallel"])
    extra = ", ".join(f"{statistics.median(p['parallel_cpu_seconds']) / statistics.median(p['sequential_cpu_seconds']) - 1:+.0%}"
                      for p in res["parallel"])
    L += ["", "The speed-up is the ratio of the medians. Worker start-up (spawn, import) took "
          f"{starts} s once per engine (rows in order) and is not part of an iteration, nor is key "
          "generation. With more workers than cores, a worker that waits for a refresh leaves its core to "
          "another one, and the parent's refresh rounds overlap with the other workers' computation; with "
          "one worker per core, a core idles while its worker waits for the parent.", "",
          "**What it took, and what bounds it.** Both cores are busy, so the speed-up is about "
          "2 x sequential CPU / parallel CPU: whatever the parallel engine does on top of the "
          "sequential one costs twice. Three costs were found and removed: (1) OpenFHE gives a "
          "deserialized ciphertext its own copy of the ring parameters, and additions on it and on "
          "everything computed from it ran ~15x slower (`bench/deserialized_ops.py`); "
          "`rhode.mhe.serial.native` re-bases it (speed-up 1.2x -> 1.45x). (2) OpenFHE's "
          "`DeserializeCiphertextString` recomputes the CRT tables of the crypto parameters that "
          "every ciphertext carries, most of its cost at ring 2^13 (`bench/deserialized_ops.py`); "
          "`ciphertexts_from_bytes` reads ciphertexts with that precomputation off and rejects any "
          "that do not resolve to the loaded context. (3) The sequential holders share one global "
          "model object, so its transposes and bias diagonals are computed once per iteration; "
          "each worker recomputed them. The aggregator now computes the forms the holders' training used "
          "once and ships them with the model. "
          f"What remains (parallel CPU {extra} of sequential CPU, rows in order) is moving ciphertexts "
          "between processes: every request and answer crosses a pipe as bytes (serialization, the frame "
          "digest, the re-base), and every holder reads its own copy of the model.", ""]
    return L


def _md_eager(res: dict, base: str) -> list[str]:
    L = ["## Refresh batching in-process", "",
         "The cipher backends' opportunistic batching (`eager_margin = 2`: a due refresh round also "
         "takes recent tensors with <= 2 levels left) saves rounds, which is what a deployment pays "
         "for (one network round trip each; the Flower engine keeps it, `refresh-margin`); in-process a "
         "round is free but every refreshed ciphertext costs one share per party, the term that grows as "
         "N^2, so the in-process engines run without it (`Federation(..., margin=None)`, the default, "
         f"used by every other table on this page). One global iteration at {base} "
         f"and at N = {PARALLEL_N}, margin set on the aggregator's and every holder's backend:", "",
         "| cell | N | eager margin | CPU s | refresh CPU s | refresh rounds | refreshed ciphertexts |",
         "|---|---|---|---|---|---|---|"]
    for e in res["eager"]:
        for m in ("2", "None"):
            v = e[m]
            L.append(f"| {e['cell'].upper()} | {e['N']} | {m if m != 'None' else 'off'} | "
                     f"{v['cpu_seconds']:.2f} | {v['refresh_cpu_seconds']:.2f} | {v['refresh_rounds']} | "
                     f"{v['refreshed_ciphertexts']} |")
    return L + [""]


def _md_mirror(res: dict, base: str) -> list[str]:
    L = ["## Encrypted vs plaintext mirror", "",
         f"Same data, seed and polynomials, {base}: the encrypted side is the sequential engine's "
         "global iteration (as above), the mirror is the numpy backend running the identical local "
         "training and FedAvg on the holders' normalized windows (`rhode.nn.fedavg.train_federated`, "
         "what a run's mirror `rhode.federated.mirror.plain_fedavg` runs: the numpy backend recording "
         "activation ranges), after the encrypted iterations.", "",
         "| cell | encrypted CPU s / iteration | mirror CPU ms / iteration | ratio (CPU) | ratio (wall) | "
         "max weight diff |", "|---|---|---|---|---|---|"]
    for m in res["mirror"]:
        L.append(f"| {m['cell'].upper()} | {statistics.median(m['encrypted_cpu_seconds']):.2f} | "
                 f"{statistics.median(m['mirror_cpu_seconds']) * 1e3:.2f} | {m['ratio_cpu']:.0f}x | "
                 f"{m['ratio_wall']:.0f}x | {m['max_abs_weight_diff']:.1e} |")
    return L + [""]


def write_markdown(res: dict, path: Path) -> None:
    base = ", ".join(f"{k} = {v}" for k, v in res["meta"]["base"].items())
    L = _md_header(res)
    for key, section in (("exponents", _md_sweep), ("profile", _md_profile), ("parallel", _md_parallel),
                         ("eager", _md_eager), ("mirror", _md_mirror)):
        if key in res:
            L += section(res, base)
    L += ["Raw data (every timing, operation counts, profile rows): `scaling.json`.", ""]
    path.write_text("\n".join(L))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two values per factor, 1 rep (smoke test)")
    ap.add_argument("--reps", type=int, default=3, help="global iterations timed per point (median)")
    ap.add_argument("--jobs", type=int, default=2, help="sweep processes running at once")
    ap.add_argument("--cells", default="rnn,gru")
    ap.add_argument("--factors", default="N,T,d,h", help="sweep only these factors")
    ap.add_argument("--parts", default="mirror,profile,eager,parallel,sweep")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--resume", action="store_true", help="reuse the sweep jobs an interrupted run finished")
    args = ap.parse_args()
    cells = args.cells.split(",")
    parts = set(args.parts.split(","))
    sweep = {f: v for f, v in (QUICK if args.quick else SWEEP).items() if f in args.factors.split(",")}
    reps = 1 if args.quick else args.reps
    meta = machine()
    meta.update({"preset": PRESET, "batch": BATCH, "local_steps": 1, "windows_per_holder": ROWS,
                 "base": BASE, "reps": reps, "sweep_jobs": args.jobs, "quick": args.quick})
    print(f"scaling bench: {meta}", flush=True)
    res: dict = {"meta": meta}
    t_all = time.perf_counter()
    if "mirror" in parts:
        print("== encrypted vs mirror", flush=True)
        res["mirror"] = [encrypted_vs_mirror(c, max(reps, 3)) for c in cells]
    if "profile" in parts:
        print("== profile", flush=True)
        res["profile"] = [profile_base(c) for c in cells]
        for p in res["profile"]:
            print(f"  {p['cell']}: {p['openfhe_share']:.1%} of {p['cpu_seconds']:.2f} s inside OpenFHE", flush=True)
    if "eager" in parts:
        print("== refresh batching (eager margin)", flush=True)
        res["eager"] = [eager_margin_effect(c, n) for c in cells for n in sorted({BASE["N"], PARALLEL_N})]
    if "parallel" in parts:
        print("== parallel vs sequential", flush=True)
        res["parallel"] = [row for c in cells for row in parallel_vs_sequential(c, max(reps, 3))]
    if "sweep" in parts:
        print("== sweep", flush=True)
        partial = args.out / ".scaling-sweep.jsonl"
        args.out.mkdir(parents=True, exist_ok=True)
        rows = run_sweep(cells, sweep, reps, args.jobs, partial, args.resume)
        rows.sort(key=lambda r: (r["cell"], list(SWEEP).index(r["factor"]), r["value"]))
        res["sweep"] = rows
        res["exponents"] = exponents(rows, cells)
    meta["seconds_total"] = round(time.perf_counter() - t_all, 1)
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    if "sweep" in res:
        plot(res["sweep"], cells, res["exponents"], args.out / "scaling.png", args.out / "scaling_ops.png")
    res["part_dates"] = {p: meta["date"] for p in ("mirror", "profile", "eager", "parallel", "sweep") if p in res}
    if args.resume and (args.out / "scaling.json").exists():  # keep the parts not rerun
        old = json.loads((args.out / "scaling.json").read_text())
        for k in ("mirror", "profile", "eager", "parallel", "sweep", "exponents"):
            if k not in res and k in old:
                res[k] = old[k]
                if k != "exponents":
                    res["part_dates"][k] = old.get("part_dates", {}).get(k, old["meta"]["date"])
        if "sweep" not in parts and "sweep" in old:
            res["meta_sweep"] = old.get("meta_sweep", old["meta"])
    (args.out / "scaling.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(res, args.out / "scaling.md")
    print(f"wrote {args.out / 'scaling.md'} ({meta['seconds_total']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
