"""The parallel in-process engine's transport: data holders in worker processes.

:class:`ProcessTransport` starts W worker processes (``spawn``, ``OMP_NUM_THREADS=1``); data holder i
lives in worker ``i % W`` as a :class:`~rhode.federated.holder.HolderSide` over a
:class:`~rhode.federated.state.MemoryState` - its secret share in that worker only, as on its own
machine. A round sends every request (one message per worker) to the
workers at once; each worker answers its holders' requests in turn, so W holders compute at the same
time. Payloads cross as their config and their blobs' byte forms (pickled by the pipe; every framed
blob is validated when it is read, as on Flower). The aggregator, which holds no secret, stays in the
parent. Same protocol, same computation as
the sequential engine up to CKKS noise.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

from rhode.errors import ParameterError, ProtocolError, RhodeError
from rhode.federated.holder import HolderSide
from rhode.federated.payload import Payload, error_payload
from rhode.federated.schema import Step
from rhode.federated.state import HolderSettings, MemoryState
from rhode.federated.transport import Transport, check_answers

log = logging.getLogger("rhode.workers")
START_TIMEOUT = 300.0


def _worker_main(conn: Connection, settings: HolderSettings, series: dict, parties_dir) -> None:
    """A worker: host the holders in ``series`` (index -> training series), answer their steps."""
    os.environ["OMP_NUM_THREADS"] = "1"
    sides = {i: HolderSide(MemoryState(i, settings, s, parties_dir)) for i, s in series.items()}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg[0] != "steps":
            return
        conn.send([_answer(sides, party, step, data) for party, step, data in msg[1]])


def _answer(sides: dict, party: int, step: str, wire: tuple[dict, dict]) -> tuple[dict, dict]:
    """Holder ``party``'s answer to one request (a rhode error keeps its message; anything else is
    an internal error, logged here), in its byte form."""
    try:
        out = sides[party].handle(Step(step), Payload(*wire))
    except Exception as exc:
        if not isinstance(exc, RhodeError):
            log.exception("step %s of data holder %d failed", step, party)
        out = error_payload(exc)
    return _wire(out)


def _wire(p: Payload) -> tuple[dict, dict]:
    """A payload as it crosses the pipe: its config and its blobs' byte forms (each framed blob
    carries its own digest, checked when it is read; pickling bytes copies them once)."""
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


class ProcessTransport(Transport):
    """Data holders in ``workers`` worker processes (see module docstring).

    Args:
        settings: what every holder agrees on with the aggregator.
        series: every data holder's training series, in party order.
        parties_dir: where each holder writes its secret share (``party-<i>.key``, 0600), or None.
        workers: worker processes, 1 to the number of holders.
    """

    def __init__(
        self, settings: HolderSettings, series: Sequence, parties_dir=None, workers: int = 2
    ) -> None:
        super().__init__()
        n = len(series)
        if not 1 <= workers <= n:
            raise ParameterError(f"workers must be between 1 and the {n} data holders, got {workers}")
        self.n_workers = workers
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list = []
        with _single_threaded_children():
            for w in range(workers):
                parent, child = ctx.Pipe()
                mine = {i: s for i, s in enumerate(series) if i % workers == w}
                p = ctx.Process(target=_worker_main, daemon=True, args=(child, settings, mine, parties_dir))
                p.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(p)
        try:
            for w, conn in enumerate(self._conns):
                if not conn.poll(START_TIMEOUT) or self._recv(conn, w)[0] != "ready":
                    raise ProtocolError(f"training worker {w} did not start within {START_TIMEOUT:.0f} s")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"ProcessTransport(workers={self.n_workers})"

    def close(self) -> None:
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
            return conn.recv()
        except (EOFError, OSError):
            self.close()
            raise ProtocolError(f"training worker {worker} died; start the run again (--resume)") from None

    def discover(self, step: Step, payload: Payload, n_parties: int, timeout: float) -> dict[int, Payload]:
        return self.exchange(step, dict.fromkeys(range(n_parties), payload), timeout)

    def exchange(self, step: Step, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        """One message per worker with all its holders' requests, one message back with their answers
        (a worker never writes while its parent still writes to it: no pipe deadlock)."""
        if not self._conns:
            raise ProtocolError("the training workers are stopped")
        t0 = time.monotonic()
        batches: dict[int, list] = {}
        sent: dict[int, int] = {}
        once: dict[int, tuple] = {}  # one byte form per distinct payload (a broadcast is encoded once)
        for party, p in requests.items():
            if id(p) not in once:
                once[id(p)] = _wire(p)
            data = once[id(p)]
            sent[party] = _size(data)
            batches.setdefault(party % self.n_workers, []).append((party, step.value, data))
        for w, batch in batches.items():
            self._conns[w].send(("steps", batch))
        answers: dict[int, Payload] = {}
        received: dict[int, int] = {}
        deadline = t0 + timeout
        waiting = dict(batches)
        while waiting:
            ready = wait([self._conns[w] for w in waiting], max(0.0, deadline - time.monotonic()))
            if not ready:
                late = sorted(party for batch in waiting.values() for party, _, _ in batch)
                raise ProtocolError(
                    f"data holder(s) {late} did not answer '{step.value}' within {timeout:.0f} s"
                )
            for conn in ready:
                w = self._conns.index(conn)
                for (party, _, _), data in zip(waiting.pop(w), self._recv(conn, w), strict=True):
                    received[party] = _size(data)
                    answers[party] = Payload(*data)
        self._record(step, t0, sent, received)
        return check_answers(step, answers, requests)


def _size(wire: tuple[dict, dict]) -> int:
    return sum(len(b) for b in wire[1].values())
