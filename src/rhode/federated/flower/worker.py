"""The node-local training worker: local training that pauses for collective refreshes.

A ClientApp handler may not block waiting for the other data holders, and in a deployment every
message may run in a fresh process. Local training, however, needs several collective refreshes in
the middle of a forward/backward pass. So each data holder's ``train.local`` handler hands the work to
a long-lived worker process on its own node (started on demand, reachable through a Unix socket in
the node's storage directory, ``worker/worker.sock``, mode 0700 directory). The worker runs
:func:`rhode.nn.train.local_training` on a :class:`~rhode.tensor.cipher.CipherBackend` whose refresh
hook *pauses*: it publishes the ciphertexts due for refresh and waits. The handler returns them to the
aggregator; after the collective ``query.refresh`` round the aggregator sends the refreshed ciphertexts
back in ``train.resume``, which the handler passes to the worker; training goes on until the next
pause or the end (the local model). The worker holds no secret: only the public context and the joint
evaluation keys.

Socket protocol: one request per connection, ``u64 length | bundle`` each way
(:func:`~rhode.federated.flower.wire.pack_bundle`). Requests (``config["op"]``):

* ``start`` (job, iteration, stats, key_tag, run_config, node_config; blob ``model``): abandon any
  current job, start this one, answer with its first pause or its end.
* ``resume`` (job; blob ``cts``): the refreshed ciphertexts of the current pause.
* ``status``, ``stop``.

Answers: ``status`` = ``pending`` (count; blob ``cts``), ``done`` (windows; blob ``model``),
``stale`` (the worker holds other keys than the request: the handler restarts it), or an error.

The worker exits when the process it watches (``--watch-pid``: the SuperExec that launches ClientApps,
which itself ends with its SuperNode) is gone, after ``--idle-timeout`` seconds without a request, or
on ``stop``. If it is lost mid-iteration, the aggregator's round times out and the iteration is
restarted from the last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from rhode.errors import ProtocolError, RhodeError, SerializationError
from rhode.federated.flower.store import CONTEXT, EVAL_KEYS, NodeStore, process_alive
from rhode.federated.flower.wire import Payload, error_payload, pack_bundle, unpack_bundle

log = logging.getLogger("rhode.flower.worker")

_LEN = struct.Struct("<Q")
MAX_MESSAGE = 1 << 34
START_TIMEOUT = 120.0


# -- framing over a stream socket ----------------------------------------------------------------------------
def _send(sock: socket.socket, p: Payload) -> None:
    data = pack_bundle(p)
    sock.sendall(_LEN.pack(len(data)) + data)


class _ClosedError(ProtocolError):
    """The peer closed the connection before sending anything (a liveness probe)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            if not buf:
                raise _ClosedError("the connection was closed")
            raise ProtocolError("the connection was closed in the middle of a message")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> Payload:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if n > MAX_MESSAGE:
        raise SerializationError("worker message too large")
    return unpack_bundle(_recv_exact(sock, n), "worker message")


# -- the handler's side --------------------------------------------------------------------------------------
def call(store: NodeStore, request: Payload, watch_pid: int, restart_if_stale: bool,
         timeout: float | None = None) -> Payload:
    """Send ``request`` to this node's worker (starting one if none runs) and return its answer.

    A ``start`` request that finds a worker with other keys restarts it (``restart_if_stale``)."""
    for attempt in range(2):
        ensure_worker(store, watch_pid)
        reply = _request(store, request, timeout)
        if reply.config.get("status") == "stale" and restart_if_stale and attempt == 0:
            store.kill_worker()
            continue
        return reply
    raise ProtocolError("the training worker does not accept this node's keys")


def _request(store: NodeStore, request: Payload, timeout: float | None) -> Payload:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(store.socket_path))
        except OSError as exc:
            raise ProtocolError(f"cannot reach the training worker at {store.socket_path}: {exc}") from None
        _send(s, request)
        return _recv(s)


def ensure_worker(store: NodeStore, watch_pid: int, idle_timeout: float = 3600.0) -> int:
    """The pid of this node's live worker, starting one (and waiting until it listens) if needed."""
    pid = store.worker_pid()
    if pid is not None and _can_connect(store.socket_path):
        return pid
    if pid is not None:
        store.kill_worker()
    store.worker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logf = open(store.worker_dir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rhode.federated.flower.worker", "--storage", str(store.root),
             "--watch-pid", str(watch_pid), "--idle-timeout", str(idle_timeout)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True)
    finally:
        logf.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (store.worker_dir / "worker.log").read_text(errors="replace")[-1500:]
            raise ProtocolError(f"the training worker exited at start (status {proc.returncode}):\n{tail}")
        if store.worker_pid() == proc.pid and _can_connect(store.socket_path):
            return proc.pid
        time.sleep(0.05)
    proc.kill()
    raise ProtocolError(f"the training worker did not start within {START_TIMEOUT:.0f} s")


def _can_connect(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


# -- the worker process -------------------------------------------------------------------------------
class _AbortedError(Exception):
    """The job was abandoned (a new job started)."""


_ABORT = object()


class Job(threading.Thread):
    """One data holder's local training for one global iteration, pausing at every refresh."""

    def __init__(self, job_id: str, ctx, request: Payload) -> None:
        super().__init__(daemon=True, name=f"job-{job_id}")
        self.job_id = job_id
        self.ctx = ctx
        self.request = request
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()

    def run(self) -> None:
        try:
            self.outbox.put(self._train())
        except _AbortedError:
            pass
        except RhodeError as exc:
            self.outbox.put(error_payload(exc))
        except Exception as exc:  # reported as an internal error; details in the worker log
            log.exception("local training failed")
            self.outbox.put(error_payload(exc))

    def _train(self) -> Payload:
        from rhode.federated.config import RunConfig
        from rhode.federated.flower.holder import Holder, stats_from_json
        from rhode.federated.flower.model_io import backend_for, model_from_bytes, model_to_bytes
        from rhode.federated.flower.settings import DeployConfig, NodeConfig
        from rhode.nn.train import local_training

        r = self.request
        dc = DeployConfig(RunConfig.from_dict(json.loads(r.get("run_config", str))))
        node = NodeConfig.from_node_config(json.loads(r.get("node_config", str)))
        stats = stats_from_json(r.get("stats", str))
        holder = Holder(node, dc, os.getpid())
        X, Y = holder.windows(stats)
        model, _, train = dc.models(X.shape[2])
        backend = backend_for(self.ctx, model, dc.run.batch, self._pause, int(r.get("refresh_margin", int)))
        params = model_from_bytes(self.ctx, backend, model, r.blob("model"))
        out = local_training(backend, model, params, X, Y, train, seed=dc.run.seed, party=node.party_index,
                             iteration=r.get("iteration", int))
        return Payload({"status": "done", "job": self.job_id, "windows": int(X.shape[0])},
                       {"model": model_to_bytes(self.ctx, backend, model, out)})

    def _pause(self, cts: list) -> list:
        from rhode.mhe import serial as S
        self.outbox.put(Payload({"status": "pending", "job": self.job_id, "count": len(cts)},
                                {"cts": S.ciphertexts_to_bytes(self.ctx, cts)}))
        msg = self.inbox.get()
        if msg is _ABORT:
            raise _AbortedError
        return S.ciphertexts_from_bytes(self.ctx, msg, count=len(cts))


class Worker:
    """The worker process: serve requests on the node's socket, one job at a time."""

    def __init__(self, store: NodeStore, watch_pid: int, idle_timeout: float) -> None:
        from rhode.mhe import serial as S
        self.store = store
        self.watch_pid = watch_pid
        self.idle_timeout = idle_timeout
        self.ctx = S.context_from_bytes(store.read(CONTEXT, "public context"))
        S.load_eval_keys(self.ctx, store.read(EVAL_KEYS, "evaluation keys"))
        self.key_tag = self.ctx.key_tag
        self.job: Job | None = None
        self.running = True

    def serve(self) -> None:
        path = self.store.socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(str(path))
            os.chmod(path, 0o600)
            srv.listen(4)
            srv.settimeout(1.0)
            self.store.pid_path.write_text(str(os.getpid()))
            last = time.monotonic()
            while self.running:
                if not _alive(self.watch_pid):
                    log.info("watched process %d is gone; exiting", self.watch_pid)
                    break
                if time.monotonic() - last > self.idle_timeout:
                    log.info("idle for %.0f s; exiting", self.idle_timeout)
                    break
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                last = time.monotonic()
                with conn:
                    conn.settimeout(None)
                    try:
                        req = _recv(conn)
                    except _ClosedError:
                        continue  # a liveness probe (ensure_worker)
                    except RhodeError as exc:
                        req, reply = None, error_payload(exc)
                    if req is not None:
                        try:
                            reply = self.dispatch(req)
                        except RhodeError as exc:
                            reply = error_payload(exc)
                    try:
                        _send(conn, reply)
                    except OSError:
                        log.warning("the handler went away before the answer was sent")
                last = time.monotonic()
        self.abort()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            if self.store.pid_path.read_text().strip() == str(os.getpid()):
                self.store.pid_path.unlink()

    def abort(self) -> None:
        if self.job is not None and self.job.is_alive():
            self.job.inbox.put(_ABORT)
            self.job.join()
        self.job = None

    def dispatch(self, req: Payload) -> Payload:
        op = req.get("op", str)
        if op == "status":
            return Payload({"status": "idle" if self.job is None else "busy", "key_tag": self.key_tag,
                            "job": self.job.job_id if self.job else "", "pid": os.getpid()})
        if op == "stop":
            self.running = False
            return Payload({"status": "stopped"})
        if op == "start":
            if req.get("key_tag", str) != self.key_tag:
                self.running = False
                return Payload({"status": "stale"})
            self.abort()
            self.job = Job(req.get("job", str), self.ctx, req)
            self.job.start()
            return self.job.outbox.get()
        if op == "resume":
            job = req.get("job", str)
            if self.job is None or self.job.job_id != job or not self.job.is_alive():
                raise ProtocolError(f"no paused job {job!r} in this worker (it was restarted or moved on); "
                                    "the iteration must restart")
            self.job.inbox.put(req.blob("cts"))
            return self.job.outbox.get()
        raise ProtocolError(f"unknown worker request {op!r}")


def _alive(pid: int) -> bool:
    return pid <= 0 or process_alive(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rhode.federated.flower.worker",
                                 description="rhode's node-local training worker (started by the ClientApp)")
    ap.add_argument("--storage", required=True, help="the data holder's storage directory")
    ap.add_argument("--watch-pid", type=int, default=0, help="exit when this process is gone")
    ap.add_argument("--idle-timeout", type=float, default=3600.0, help="exit after this many idle seconds")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Worker(NodeStore(a.storage), a.watch_pid, a.idle_timeout).serve()
    except RhodeError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
