"""The parallel in-process engine: data holders' local training in worker processes.

:class:`ParallelTrainer` runs the local training step of the protocol (DESIGN.md, training step 2)
for every data holder at once, one worker process per holder (or fewer, each taking its share of the
holders in turn). A worker holds only public material: the context and the joint evaluation keys,
loaded from bytes once when it starts and reused for every global iteration. It never sees a secret
share. Its cipher backend's refresh hook sends the ciphertexts that are due as bytes to the parent and
waits; the parent, which holds the :class:`~rhode.mhe.LocalCollective` of an
:class:`~rhode.federated.engine.EncryptedSession`, gathers the refresh requests that are pending from
all workers at that moment into ONE collective refresh round and answers each worker with its own
ciphertexts. Local models come back as bytes; aggregation (FedAvg) stays in the parent session.

The global model is sent with every form (transposes, bias diagonals) that the holders' training
used in the previous iteration, computed once by the parent: the sequential engine's holders share
these on one model object, and recomputing them in every worker cost more than the ciphertexts'
transfer. The holders a worker trains in turn share the model it imported.

Every holder runs exactly the computation of the sequential engine (same plan, batches, polynomials,
refresh rule), so both engines give the same model up to CKKS noise (tests/federated/test_parallel.py).

Usage::

    session = EncryptedSession.create(params, n, model, batch)
    enc = session.encrypt_model(model.init_params(seed))
    with ParallelTrainer(session) as trainer:
        for it in range(iterations):
            local = trainer.local_training(enc, [(X_i, Y_i), ...], train, seed=seed, iteration=it)
            enc = session.aggregate(local, weights)

Workers are started with the ``spawn`` method and ``OMP_NUM_THREADS=1`` (one thread each).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from rhode.errors import ParameterError, ProtocolError

if TYPE_CHECKING:
    from rhode.federated.engine import EncryptedSession
    from rhode.nn.config import ModelConfig, TrainConfig

START_TIMEOUT = 300.0


@dataclass
class IterationStats:
    """What one call of :meth:`ParallelTrainer.local_training` cost.

    Attributes:
        wall_seconds: elapsed time of the call.
        parent_cpu_seconds: process CPU time of the parent (refresh rounds, (de)serialization).
        worker_cpu_seconds: process CPU time of each holder's local training in its worker.
        refresh_seconds: parent time spent in collective refresh rounds.
        refresh_rounds: collective refresh rounds run (each batches all requests pending then).
        refresh_requests: requests the workers sent (without batching: one round each).
        refreshed_ciphertexts: ciphertexts refreshed.
        operations: evaluator operation counts summed over the holders.
        operations_by_op: the same per backend operation (e.g. ``"transpose"``), summed over the holders.
    """

    wall_seconds: float = 0.0
    parent_cpu_seconds: float = 0.0
    worker_cpu_seconds: dict[int, float] = field(default_factory=dict)
    refresh_seconds: float = 0.0
    refresh_rounds: int = 0
    refresh_requests: int = 0
    refreshed_ciphertexts: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    operations_by_op: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        """CPU time of all processes together (parent + workers)."""
        return self.parent_cpu_seconds + sum(self.worker_cpu_seconds.values())


def model_to_bytes(ctx, backend, names: Sequence[str], params: dict) -> bytes:
    """One framed ciphertext list: each parameter's canonical (nat) ciphertext, in ``names`` order."""
    from rhode.mhe.serial import ciphertexts_to_bytes
    cts = []
    for name in names:
        cts.extend(backend.export_param(params[name]))
    return ciphertexts_to_bytes(ctx, cts)


def model_from_bytes(ctx, backend, shapes: dict[str, tuple[int, ...]], data: bytes) -> dict:
    """Inverse of :func:`model_to_bytes` (checks count, levels and the joint key tag)."""
    from rhode.mhe.serial import ciphertexts_from_bytes
    cts = ciphertexts_from_bytes(ctx, data, count=len(shapes))
    return {name: backend.import_param([ct], shape) for (name, shape), ct in zip(shapes.items(), cts)}


def forms_to_bytes(ctx, backend, names: Sequence[str], params: dict) -> tuple[bytes, list[list[str]]]:
    """Every materialized form of each parameter (nat, and transposes or diagonals computed once for
    all holders) as one framed ciphertext list, and the form names per parameter in ``names`` order."""
    from rhode.mhe.serial import ciphertexts_to_bytes
    cts, layout = [], []
    for name in names:
        forms = backend.forms(params[name])
        layout.append(list(forms))
        cts.extend(forms.values())
    return ciphertexts_to_bytes(ctx, cts), layout


def forms_from_bytes(ctx, backend, shapes: dict[str, tuple[int, ...]], data: bytes,
                     layout: Sequence[Sequence[str]]) -> dict:
    """Inverse of :func:`forms_to_bytes`."""
    from rhode.mhe.serial import ciphertexts_from_bytes
    if len(layout) != len(shapes):
        raise ProtocolError(f"the model has {len(shapes)} parameters, the layout names {len(layout)}")
    cts = iter(ciphertexts_from_bytes(ctx, data, count=sum(len(f) for f in layout)))
    return {name: backend.import_forms({f: next(cts) for f in forms}, shape)
            for (name, shape), forms in zip(shapes.items(), layout, strict=True)}


# -- the worker process ------------------------------------------------------------------------------------
def _worker_main(conn: Connection, context_bytes: bytes, eval_keys_bytes: bytes,
                 model_config: ModelConfig, batch: int, eager_margin: int | None) -> None:
    """Entry point of a worker: load the public keys, then serve ``train`` jobs until ``stop``."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from rhode.federated.engine import plan_for
        from rhode.mhe import serial as S
        from rhode.mhe.evaluator import Evaluator
        from rhode.nn.model import RecurrentModel
        from rhode.nn.train import local_training
        from rhode.tensor.cipher import CipherBackend

        ctx = S.context_from_bytes(context_bytes)
        S.load_eval_keys(ctx, eval_keys_bytes)
        model = RecurrentModel(model_config)

        def refresh(cts: list) -> list:
            conn.send(("refresh", S.ciphertexts_to_bytes(ctx, cts)))
            kind, data = conn.recv()
            if kind != "refreshed":
                raise ProtocolError(f"the parent answered a refresh request with {kind!r}")
            return S.ciphertexts_from_bytes(ctx, data, count=len(cts))

        backend = CipherBackend(Evaluator(ctx), plan_for(model, batch, ctx.params), refresh=refresh,
                                eager_margin=eager_margin)
        backend.prepare(model.param_shapes)
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ready", os.getpid()))
    cached: tuple[int, dict] | None = None  # (model id, imported global model): shared by its holders
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] != "train":
            return
        job: dict[str, Any] = msg[1]
        t0 = time.process_time()
        try:
            backend.reset_counters()
            if cached is None or cached[0] != job["model_id"]:
                cached = None
                cached = (job["model_id"], forms_from_bytes(ctx, backend, model.param_shapes,
                                                            job["model"], job["forms"]))
            params = cached[1]
            out = local_training(backend, model, params, job["X"], job["Y"], job["train"],
                                 seed=job["seed"], party=job["party"], iteration=job["iteration"])
            blob = model_to_bytes(ctx, backend, list(model.param_shapes), out)
            ops = backend.counters()
            used = {name: sorted(p.forms) for name, p in params.items()}
            conn.send(("done", blob, time.process_time() - t0, ops, used))
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc)))


@contextlib.contextmanager
def _single_threaded_children():
    """Children started inside inherit OMP_NUM_THREADS=1 (OpenMP reads it when OpenFHE loads)."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


# -- the parent side -----------------------------------------------------------------------------------------
class ParallelTrainer:
    """Local training of all data holders in parallel worker processes.

    Args:
        session: the in-process engine whose collective (secret shares, in this process) runs the
            refresh rounds and whose backend imports the local models for aggregation.
        workers: number of worker processes (default: one per data holder). Holder i is trained by
            worker ``i % workers``.
        eager_margin: the workers' cipher backends' ``eager_margin`` (see
            :class:`~rhode.tensor.cipher.CipherBackend`); ``-1`` (default): the session backend's.
        start_method: ``spawn`` (default) or ``forkserver``; never ``fork`` (OpenFHE's state).

    Attributes:
        last: :class:`IterationStats` of the last :meth:`local_training` call.
    """

    def __init__(self, session: EncryptedSession, workers: int | None = None,
                 eager_margin: int | None = -1, start_method: str = "spawn") -> None:
        from rhode.mhe.serial import context_to_bytes, eval_keys_to_bytes

        n = session.collective.n_parties
        self.n_workers = n if workers is None else int(workers)
        if not 1 <= self.n_workers <= n:
            raise ParameterError(f"workers must be between 1 and the {n} data holders, got {workers}")
        if start_method not in ("spawn", "forkserver"):
            raise ParameterError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
        self.session = session
        self.last = IterationStats()
        self._forms: dict[str, set[str]] = {}  # forms of the global model the holders' training used
        self._model_ids = itertools.count()
        margin = session.backend.eager_margin if eager_margin == -1 else eager_margin
        ctx = session.collective.context
        blobs = (context_to_bytes(ctx), eval_keys_to_bytes(ctx))
        mpctx = mp.get_context(start_method)
        self._conns: list[Connection] = []
        self._procs: list = []
        with _single_threaded_children():
            for _ in range(self.n_workers):
                parent, child = mpctx.Pipe()
                p = mpctx.Process(target=_worker_main, daemon=True,
                                  args=(child, *blobs, session.model.config, session.batch, margin))
                p.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(p)
        try:
            for i, conn in enumerate(self._conns):
                self._expect(conn, i, "ready", START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ParallelTrainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ParallelTrainer(workers={self.n_workers}, parties={self.session.collective.n_parties})"

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
            conn.close()
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
        self._conns, self._procs = [], []

    def _recv(self, conn: Connection, worker: int):
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self.close()
            raise ProtocolError(f"training worker {worker} died; start a new ParallelTrainer") from None
        if msg[0] == "error":
            self.close()
            raise ProtocolError(f"training worker {worker} failed: {msg[1]}: {msg[2]}")
        return msg

    def _expect(self, conn: Connection, worker: int, kind: str, timeout: float):
        if not conn.poll(timeout):
            self.close()
            raise ProtocolError(f"training worker {worker} did not answer within {timeout:.0f} s")
        msg = self._recv(conn, worker)
        if msg[0] != kind:
            self.close()
            raise ProtocolError(f"training worker {worker} sent {msg[0]!r}, expected {kind!r}")
        return msg

    def local_training(self, params: dict, holders: Sequence[tuple[np.ndarray, np.ndarray]],
                       train: TrainConfig, *, seed: int, iteration: int,
                       on_done: Callable[[int], None] | None = None) -> list[dict]:
        """Every data holder's local training on the encrypted global model ``params``.

        ``holders[i] = (X_i (n_i, T, d), Y_i (n_i, output_size))`` is data holder i's plaintext
        windows (it reaches only worker ``i % workers``). Returns the local models (encrypted,
        imported into the session's backend), in holder order, ready for ``session.aggregate``.
        ``on_done(i)`` is called when holder i's local model arrives (progress bars). Costs:
        :attr:`last`; the operation counts are also added to ``session.worker_operations``."""
        if not self._conns:
            raise ProtocolError("the ParallelTrainer is closed")
        n = self.session.collective.n_parties
        if len(holders) != n:
            raise ParameterError(f"expected the windows of {n} data holders, got {len(holders)}")
        w0, c0 = time.perf_counter(), time.process_time()
        session, be = self.session, self.session.backend
        ctx = session.collective.context
        names = list(session.model.param_shapes)
        # the forms (transposes, diagonals) the last iteration's training used, computed once here for
        # every holder, as the sequential engine's holders share them on the global model
        for name, forms in self._forms.items():
            be.add_forms(params[name], forms)
        blob, layout = forms_to_bytes(ctx, be, names, params)
        model_id = next(self._model_ids)
        queues: list[list[int]] = [list(range(w, n, self.n_workers)) for w in range(self.n_workers)]
        stats = IterationStats()
        results: dict[int, bytes] = {}
        current: dict[int, int] = {}

        def start_next(w: int) -> bool:
            if not queues[w]:
                return False
            party = queues[w].pop(0)
            X, Y = holders[party]
            job = {"model": blob, "forms": layout, "model_id": model_id, "X": np.asarray(X),
                   "Y": np.asarray(Y), "train": train, "seed": seed, "party": party,
                   "iteration": iteration}
            self._conns[w].send(("train", job))
            current[w] = party
            return True

        active = {self._conns[w]: w for w in range(self.n_workers) if start_next(w)}
        ops: dict[str, int] = {}
        while active:
            requests = []
            for conn in wait(list(active)):
                w = active[conn]
                msg = self._recv(conn, w)
                if msg[0] == "refresh":
                    requests.append((conn, msg[1]))
                elif msg[0] == "done":
                    results[current[w]] = msg[1]
                    stats.worker_cpu_seconds[current[w]] = msg[2]
                    for k, v in msg[3]["total"].items():
                        ops[k] = ops.get(k, 0) + int(v)
                    for op, counts in msg[3]["by_op"].items():
                        mine = stats.operations_by_op.setdefault(op, {})
                        for k, v in counts.items():
                            mine[k] = mine.get(k, 0) + int(v)
                    for name, forms in msg[4].items():
                        self._forms.setdefault(name, set()).update(forms)
                    if on_done is not None:
                        on_done(current[w])
                    if not start_next(w):
                        del active[conn]
                else:
                    self.close()
                    raise ProtocolError(f"training worker {w} sent an unexpected {msg[0]!r}")
            if requests:
                self._refresh_round(requests, stats)
        local = [model_from_bytes(ctx, be, session.model.param_shapes, results[i]) for i in range(n)]
        stats.operations = ops
        for k, v in ops.items():
            session.worker_operations[k] = session.worker_operations.get(k, 0) + v
        stats.wall_seconds = time.perf_counter() - w0
        stats.parent_cpu_seconds = time.process_time() - c0
        session.timer.add("local", stats.wall_seconds - stats.refresh_seconds)
        self.last = stats
        return local

    def _refresh_round(self, requests: list[tuple[Connection, bytes]], stats: IterationStats) -> None:
        """One collective refresh round for every pending request; each worker gets its own back."""
        from rhode.mhe.serial import ciphertexts_from_bytes, ciphertexts_to_bytes
        session = self.session
        ctx = session.collective.context
        parts = [ciphertexts_from_bytes(ctx, data) for _, data in requests]
        t0 = time.perf_counter()
        fresh = session.collective.refresh([ct for part in parts for ct in part])
        dt = time.perf_counter() - t0
        session.timer.add("refresh", dt)
        stats.refresh_seconds += dt
        stats.refresh_rounds += 1
        stats.refresh_requests += len(requests)
        stats.refreshed_ciphertexts += len(fresh)
        pos = 0
        for (conn, _), part in zip(requests, parts, strict=True):
            conn.send(("refreshed", ciphertexts_to_bytes(ctx, fresh[pos:pos + len(part)])))
            pos += len(part)
