"""The node-local worker process: a data holder's jobs, which pause for collective refreshes.

A ClientApp handler may not block waiting for the other data holders, and in a deployment every
message may run in a fresh process; a job (local training, the encrypted loss) needs several
collective refreshes in the middle of a forward or backward pass. So each data holder's ``TRAIN``
handler hands the job to a long-lived worker process on its own node (started on demand by
:func:`rhode.federated.flower.link.call`, reachable through the node's socket). The worker runs the
job in a :class:`~rhode.federated.job.JobRunner` - the same code as the in-process engines - over a
:class:`~rhode.federated.flower.node.NodeState`; the handler returns each pause to the aggregator,
and ``RESUME`` brings the refreshed ciphertexts back. The worker holds no secret: only the public
context and the joint evaluation keys.

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
import signal
import socket
import sys
import time

from rhode.errors import ProtocolError, RhodeError
from rhode.federated.config import RunConfig
from rhode.federated.flower.link import _ClosedError, _recv, _send
from rhode.federated.flower.node import NodeState
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import CONTEXT, NodeStore, process_alive
from rhode.federated.payload import Payload, error_payload
from rhode.federated.schema import Field, Status, WorkerOp
from rhode.federated.state import LocalJobs
from rhode.mhe import serial as S

log = logging.getLogger("rhode.flower.worker")


class Worker:
    """The worker process: serve requests on the node's socket, one job at a time."""

    def __init__(self, store: NodeStore, watch_pid: int, idle_timeout: float) -> None:
        self.store = store
        self.watch_pid = watch_pid
        self.idle_timeout = idle_timeout
        self.key_tag = self._stored_key_tag()
        self.jobs: LocalJobs | None = None
        self.running = True

    def _stored_key_tag(self) -> str:
        return S.context_from_bytes(self.store.read(CONTEXT, "public context")).key_tag

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
            while self.running and self._keep_going(last):
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._serve_one(conn)
                last = time.monotonic()
        if self.jobs is not None:
            self.jobs.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            if self.store.pid_path.read_text().strip() == str(os.getpid()):
                self.store.pid_path.unlink()

    def _keep_going(self, last: float) -> bool:
        if not _alive(self.watch_pid):
            log.info("watched process %d is gone; exiting", self.watch_pid)
            return False
        if time.monotonic() - last > self.idle_timeout:
            log.info("idle for %.0f s; exiting", self.idle_timeout)
            return False
        return True

    def _serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        try:
            reply = self.dispatch(_recv(conn))
        except _ClosedError:
            return  # a liveness probe (ensure_worker)
        except RhodeError as exc:
            reply = error_payload(exc)
        try:
            _send(conn, reply)
        except OSError:
            log.warning("the handler went away before the answer was sent")

    def dispatch(self, req: Payload) -> Payload:
        try:
            op = WorkerOp(req.get(Field.OP.value, str))
        except ValueError:
            raise ProtocolError(f"unknown worker request {req.config.get(Field.OP.value)!r}") from None
        if op is WorkerOp.STATUS:
            busy = Status.IDLE if self.jobs is None else Status.BUSY
            return Payload({Field.STATUS.value: busy.value, Field.KEY_TAG.value: self.key_tag})
        if op is WorkerOp.STOP:
            self.running = False
            return Payload({Field.STATUS.value: Status.STOPPED.value})
        if op is WorkerOp.START:
            if req.get(Field.KEY_TAG.value, str) != self.key_tag:
                self.running = False
                return Payload({Field.STATUS.value: Status.STALE.value})
            return self._jobs(req).start(req)
        if self.jobs is None:
            raise ProtocolError("no paused job in this worker (it was restarted); the iteration must restart")
        return self.jobs.resume(req)

    def _jobs(self, req: Payload) -> LocalJobs:
        """The job runner over this node's state (made at the first job; the keys loaded once)."""
        if self.jobs is None:
            dc = DeployConfig(RunConfig.from_dict(json.loads(req.get(Field.RUN_CONFIG.value, str))))
            node = NodeConfig.from_node_config(json.loads(req.get(Field.NODE_CONFIG.value, str)))
            state = NodeState(node, dc, os.getpid())
            state.load_stored_eval_keys()
            self.jobs = LocalJobs(state)
        return self.jobs


def _alive(pid: int) -> bool:
    return pid <= 0 or process_alive(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rhode.federated.flower.worker",
        description="rhode's node-local training worker (started by the ClientApp)",
    )
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
