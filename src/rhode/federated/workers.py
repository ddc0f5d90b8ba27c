"""The parallel in-process engine: the data holders' jobs in worker processes.

A data holder's steps that use its secret share (key generation, refresh, decryption and key-switch
shares) are cheap and stay in this process, as a Flower node's handler does; its *jobs* (local
training and the encrypted loss: nearly all the computation) run in a worker process, as a Flower
node's worker does. :class:`JobWorkers` starts W worker processes (``spawn``, ``OMP_NUM_THREADS=1``);
holder i's jobs run in worker ``i % W``, which holds only public material: the joint context and
evaluation keys, sent once per key epoch. :class:`ProcessJobs` is a holder's jobs interface
(``start``, ``resume``) over that worker. With :class:`~rhode.federated.transport.LocalTransport`
handing the ``TRAIN`` and ``RESUME`` steps to every holder at once (``concurrent``), W jobs compute at
the same time while every refresh round is made in this process without serializing a share. Same
protocol and same computation as the sequential engine, up to CKKS noise.

Payloads cross the pipe as their config and their blobs' byte forms (every framed blob is validated
when it is read, as on Flower); the global model of a round is encoded once for all holders.

Stopping: the workers ignore SIGINT (Ctrl-C reaches the whole process group; this process handles it),
a worker whose channel closes ends silently, and when the run stops (:meth:`ProcessJobs.close` for
every holder, then :meth:`JobWorkers.close`) a request in flight is abandoned at once and a worker
still computing it is terminated.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

from rhode.errors import ParameterError, ProtocolError, RhodeError
from rhode.federated.payload import Blob, Payload, error_payload
from rhode.federated.state import HolderSettings, HolderState, LocalJobs, MemoryState
from rhode.mhe import MheContext
from rhode.mhe import serial as S

log = logging.getLogger("rhode.workers")
START_TIMEOUT = 300.0


def _worker_main(conn: Connection, settings: HolderSettings, series: dict) -> None:
    """A worker: run the jobs of the holders in ``series`` (index -> training series). Ctrl-C is the
    parent's to handle (SIGINT ignored; the parent stops its workers); a closed channel (the parent is
    gone: end of file, broken pipe) ends the worker silently."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    with contextlib.suppress(EOFError, OSError):
        _serve(conn, settings, series)


def _serve(conn: Connection, settings: HolderSettings, series: dict) -> None:
    states = {i: MemoryState(i, settings, s) for i, s in series.items()}  # no secret share here
    jobs = {i: st.jobs() for i, st in states.items()}
    try:
        conn.send(("ready", os.getpid()))
        while True:
            msg = conn.recv()
            if msg[0] == "keys":
                conn.send(_install(states, msg[1], msg[2]))
            elif msg[0] in ("start", "resume"):
                conn.send(_job(jobs[msg[1]], msg[0], msg[2]))
            else:
                return
    finally:
        for j in jobs.values():
            j.close()


def _install(states: dict, context: bytes, eval_keys: bytes) -> tuple[dict, dict]:
    """The joint context and evaluation keys of a new key epoch, for every holder of this worker."""
    try:
        ctx = S.context_from_bytes(context)
        S.load_eval_keys(ctx, eval_keys)
    except RhodeError as exc:
        return _wire(error_payload(exc))
    for st in states.values():
        st.use_keys(ctx)
    return _wire(Payload({}))


def _job(jobs: LocalJobs, op: str, wire: tuple[dict, dict]) -> tuple[dict, dict]:
    """Start or resume a holder's job; its next pause or its end, in byte form."""
    try:
        out = jobs.start(Payload(*wire)) if op == "start" else jobs.resume(Payload(*wire))
    except Exception as exc:  # a rhode error keeps its message; anything else is internal (logged)
        if not isinstance(exc, RhodeError):
            log.exception("job of a data holder failed")
        out = error_payload(exc)
    return _wire(out)


def _wire(p: Payload) -> tuple[dict, dict]:
    """A payload as it crosses the pipe: its config and its blobs' byte forms."""
    e = p.encoded()
    return e.config, e.blobs


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


@contextlib.contextmanager
def _children_ignore_sigint():
    """Children started inside ignore SIGINT from their first instruction (an ignored signal stays
    ignored across exec), so a Ctrl-C, which reaches the whole process group, is this process's to
    handle; one that comes meanwhile is held (blocked) and reaches this process afterwards."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class JobWorkers:
    """``workers`` worker processes running the jobs of the holders whose training ``series`` are
    given (party order); see the module docstring."""

    def __init__(self, settings: HolderSettings, series: Sequence, workers: int = 2) -> None:
        n = len(series)
        if not 1 <= workers <= n:
            raise ParameterError(f"workers must be between 1 and the {n} data holders, got {workers}")
        self.n_workers = workers
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list = []
        self._locks = [threading.Lock() for _ in range(workers)]
        self._tags: list[str | None] = [None] * workers
        self._blobs: dict[int, tuple] = {}  # id -> (blob, bytes): a blob shared by the holders' requests
        self._encode_lock = threading.Lock()
        self._stopping = threading.Event()
        self._busy = [True] * workers  # starting, or a request without its answer yet
        self._abandoned: set[int] = set()  # holders whose request in flight is abandoned
        try:
            with _single_threaded_children(), _children_ignore_sigint():
                for w in range(workers):
                    parent, child = ctx.Pipe()
                    mine = {i: s for i, s in enumerate(series) if i % workers == w}
                    p = ctx.Process(target=_worker_main, daemon=True, args=(child, settings, mine))
                    self._conns.append(parent)
                    self._procs.append(p)
                    p.start()
                    child.close()
            for w, conn in enumerate(self._conns):
                if not conn.poll(START_TIMEOUT) or self._recv(w)[0] != "ready":
                    raise ProtocolError(f"training worker {w} did not start within {START_TIMEOUT:.0f} s")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"JobWorkers(workers={self.n_workers})"

    def jobs(self, state: HolderState) -> ProcessJobs:
        """The jobs interface of data holder ``state`` (its jobs run in worker ``index % W``)."""
        return ProcessJobs(self, state)

    def abandon(self, index: int) -> None:
        """Holder ``index``'s current job is abandoned (a new key epoch, or the run stops: Ctrl-C): a
        request of it in flight ends in ProtocolError at once, and its worker, still busy with it, is
        not used again (:meth:`close` terminates it)."""
        self._abandoned.add(index)

    def close(self) -> None:
        """Stop the workers (idempotent): an idle worker is asked to stop, one that is starting or
        computing an abandoned request is terminated (it holds only public material)."""
        self._stopping.set()
        busy = [w for w in range(len(self._procs)) if self._busy[w]]
        for w, conn in enumerate(self._conns):
            if w not in busy:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))
            conn.close()
        for w, p in enumerate(self._procs):
            if w in busy and p.pid is not None:
                p.terminate()
            with contextlib.suppress(AssertionError):  # a process that never started
                p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
        self._conns, self._procs = [], []

    def call(self, index: int, op: str, p: Payload, ctx: MheContext) -> Payload:
        """Send holder ``index``'s job request ``op`` (start or resume) to its worker; its answer."""
        self._abandoned.discard(index)
        if not self._conns or self._stopping.is_set():
            raise ProtocolError("the training workers are stopped")
        w = index % self.n_workers
        wire = self._encoded(p)
        with self._locks[w]:
            if index in self._abandoned or self._busy[w]:
                raise ProtocolError(f"training worker {w} is busy with an abandoned job; start the run "
                                    "again (--resume)")
            if self._tags[w] != ctx.key_tag:
                self._send(w, ("keys", S.context_to_bytes(ctx), S.eval_keys_to_bytes(ctx)))
                answer = Payload(*self._recv(w, index))
                if answer.error:
                    raise ProtocolError(f"training worker {w} refused the keys: {answer.error}")
                self._tags[w] = ctx.key_tag
            self._send(w, (op, index, wire))
            return Payload(*self._recv(w, index))

    def _send(self, worker: int, msg: tuple) -> None:
        self._busy[worker] = True
        try:
            self._conns[worker].send(msg)
        except (OSError, ValueError):
            raise ProtocolError(f"training worker {worker} died; start the run again (--resume)") from None

    def _encoded(self, p: Payload) -> tuple[dict, dict]:
        """``p``'s byte form; a blob that several holders' requests share (the global model) is
        encoded once."""
        blobs = {}
        with self._encode_lock:
            for name, b in p.blobs.items():
                if not isinstance(b, Blob):
                    blobs[name] = b
                    continue
                hit = self._blobs.get(id(b))
                if hit is None or hit[0] is not b:
                    hit = self._blobs[id(b)] = (b, b.encode())
                    while len(self._blobs) > 8:
                        del self._blobs[next(iter(self._blobs))]
                blobs[name] = hit[1]
        return dict(p.config), blobs

    def _recv(self, worker: int, index: int | None = None):
        """Worker ``worker``'s answer (to holder ``index``'s request); ProtocolError if the worker died,
        the request was abandoned or the workers are closing."""
        conn = self._conns[worker]
        try:
            while not conn.poll(0.5):
                if self._stopping.is_set() or index in self._abandoned:
                    raise ProtocolError(f"the job of data holder {index} was abandoned")
            answer = conn.recv()
        except (EOFError, OSError):
            raise ProtocolError(f"training worker {worker} died; start the run again (--resume)") from None
        self._busy[worker] = False
        return answer


class ProcessJobs:
    """One data holder's jobs, run by its worker (the jobs interface of a
    :class:`~rhode.federated.state.HolderState`)."""

    def __init__(self, pool: JobWorkers, state: HolderState) -> None:
        self.pool = pool
        self.state = state

    def start(self, p: Payload) -> Payload:
        return self.pool.call(self.state.index, "start", p, self.state.context())

    def resume(self, p: Payload) -> Payload:
        return self.pool.call(self.state.index, "resume", p, self.state.context())

    def close(self) -> None:
        """Abandon this holder's current job (:meth:`JobWorkers.abandon`); the pool owns the workers."""
        self.pool.abandon(self.state.index)
