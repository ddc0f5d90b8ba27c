"""The node-local holder service: a data holder's state and jobs, kept between Flower messages.

Flower runs every message in a fresh ``flwr-clientapp`` process. The ClientApp is only a relay
(:mod:`rhode.federated.flower.relay`): it hands each message's payload to this long-lived process on
its own node (started on demand by :func:`rhode.federated.flower.link.call`, reachable through the
node's socket, mode 0600 in a 0700 directory), which answers the step with the one holder side
(:class:`~rhode.federated.holder.HolderSide`) over one :class:`~rhode.federated.flower.node.NodeState`.
The state reads the public context, the evaluation keys and the secret share from the node's storage
once and keeps them in memory (the secret share never leaves this process except as protocol shares);
jobs (local training, the encrypted loss), which pause for collective refreshes, run here in a
:class:`~rhode.federated.job.JobRunner` - the same code as the in-process engines.

The service exits when the process it watches (``--watch-pid``: the SuperExec that launches ClientApps,
which itself ends with its SuperNode) is gone, after ``--idle-timeout`` seconds without a request, or
on ``stop``. If it is lost mid-iteration, the aggregator's round times out and the iteration is
restarted from the last checkpoint; a new service starts from the storage directory.
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
from rhode.federated.flower.link import _ClosedError, _recv, _send
from rhode.federated.flower.node import NodeState
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import CONTEXT, NodeStore, process_alive
from rhode.federated.holder import HolderSide
from rhode.federated.payload import Payload, error_payload
from rhode.federated.schema import Field, Status, WorkerOp

log = logging.getLogger("rhode.flower.worker")


class Worker:
    """The holder service: serve requests on the node's socket, one at a time."""

    def __init__(self, store: NodeStore, watch_pid: int, idle_timeout: float) -> None:
        self.store = store
        self.watch_pid = watch_pid
        self.idle_timeout = idle_timeout
        self.state: NodeState | None = None
        self._key: tuple[str, str] | None = None
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
            while self.running and self._keep_going(last):
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._serve_one(conn)
                last = time.monotonic()
        if self.state is not None:
            self.state.close()
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
            req = _recv(conn)
            message = _recv(conn) if req.config.get(Field.OP.value) == WorkerOp.STEP.value else None
            reply = self.dispatch(req, message)
        except _ClosedError:
            return  # a liveness probe (ensure_worker)
        except RhodeError as exc:
            reply = error_payload(exc)
        try:
            _send(conn, reply)
        except OSError:
            log.warning("the handler went away before the answer was sent")

    def dispatch(self, req: Payload, message: Payload | None = None) -> Payload:
        """The answer to ``req`` (for op ``step``: to the step with payload ``message``)."""
        try:
            op = WorkerOp(req.get(Field.OP.value, str))
        except ValueError:
            raise ProtocolError(f"unknown holder-service op {req.config.get(Field.OP.value)!r}") from None
        if op is WorkerOp.STATUS:
            return Payload({Field.STATUS.value: Status.IDLE.value, Field.KEY_TAG.value: self.key_tag()})
        if op is WorkerOp.STOP:
            self.running = False
            return Payload({Field.STATUS.value: Status.STOPPED.value})
        t0 = time.perf_counter()
        step = req.get(Field.STEP.value, str)
        if message is None:
            raise ProtocolError(f"holder-service request '{step}' came without its message")
        state, before = None, 0.0
        try:
            state = self._state(req)
            before = state.load_seconds
            answer = HolderSide(state).handle(step, message)
        except RhodeError as exc:
            answer = error_payload(exc)
        except Exception as exc:  # a bug must not end the service; the message says "internal error"
            log.exception("step %s failed", step)
            answer = error_payload(exc)
        t1 = time.perf_counter()
        answer = answer.encoded()
        load = state.load_seconds - before if state is not None else 0.0
        answer.config[Field.TIMING.value] = json.dumps(
            {"load": load, "step": t1 - t0 - load, "encode": time.perf_counter() - t1})
        return answer

    def key_tag(self) -> str:
        """The joint key tag of the state this service holds ('' before any)."""
        if self.state is None or not self.state.store.has(CONTEXT):
            return ""
        return self.state.context().key_tag

    def _state(self, req: Payload) -> NodeState:
        """The holder's state for the request's run and node configuration (kept while they stay the
        same: its context, evaluation keys, secret share and paused job live in this process)."""
        key = (req.get(Field.RUN_CONFIG.value, str), req.get(Field.NODE_CONFIG.value, str))
        if self.state is None or self._key != key:
            dc = DeployConfig.from_run_config(json.loads(key[0]))
            node = NodeConfig.from_node_config(json.loads(key[1]))
            if node.storage.resolve() != self.store.root.resolve():
                raise ProtocolError(f"this holder service serves {self.store.root}, not {node.storage}")
            if self.state is not None:
                self.state.close()
            self.state, self._key = NodeState(node, dc), key
        return self.state


def _alive(pid: int) -> bool:
    return pid <= 0 or process_alive(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rhode.federated.flower.worker",
        description="rhode's node-local holder service (started by the ClientApp relay)",
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
