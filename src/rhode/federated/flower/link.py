"""The link between a data holder's ClientApp relay and its node-local holder service.

One request per connection over the Unix socket ``worker/worker.sock`` of the node's storage (mode
0700 directory), frames of ``u64 length | bundle`` (:func:`~rhode.federated.payload.pack_bundle`,
streamed part by part and read in place: a key-generation message is hundreds of MB).
:func:`call` starts the service if none runs. Requests (``config["op"]``, :class:`WorkerOp`): ``step``
(a protocol step: its name and the run and node configurations; the step's payload follows as a
second frame), ``status``, ``stop``. Answers: the step's answer (or a rhode error payload).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from rhode.errors import ProtocolError, SerializationError
from rhode.federated.flower.store import NodeStore
from rhode.federated.payload import Payload, bundle_parts, unpack_bundle

_LEN = struct.Struct("<Q")
MAX_MESSAGE = 1 << 34
START_TIMEOUT = 120.0


# -- framing over a stream socket ----------------------------------------------------------------------------
def _send(sock: socket.socket, p: Payload) -> None:
    parts = bundle_parts(p)  # sent one by one: a message of keys is hundreds of MB, never copied whole
    sock.sendall(_LEN.pack(sum(len(part) for part in parts)))
    for part in parts:
        sock.sendall(part)


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
        raise SerializationError("holder-service message too large")
    buf = bytearray(n)  # read in place, unpacked in place
    view, pos = memoryview(buf), 0
    while pos < n:
        got = sock.recv_into(view[pos:], min(n - pos, 1 << 24))
        if not got:
            raise ProtocolError("the connection was closed in the middle of a message")
        pos += got
    return unpack_bundle(buf, "holder-service message")


# -- the handler's side --------------------------------------------------------------------------------------
def call(store: NodeStore, request: Payload, watch_pid: int, timeout: float | None = None,
         message: Payload | None = None) -> Payload:
    """Send ``request`` (and, for a ``step``, the step's payload ``message`` as a second frame) to this
    node's holder service (starting one if none runs) and return its answer."""
    ensure_worker(store, watch_pid)
    return _request(store, request, timeout, message)


def _request(store: NodeStore, request: Payload, timeout: float | None, message: Payload | None) -> Payload:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(store.socket_path))
        except OSError as exc:
            raise ProtocolError(f"cannot reach the holder service at {store.socket_path}: {exc}") from None
        _send(s, request)
        if message is not None:
            _send(s, message)
        return _recv(s)


def ensure_worker(store: NodeStore, watch_pid: int, idle_timeout: float = 3600.0) -> int:
    """The pid of this node's live holder service, starting one (and waiting until it listens) if
    needed."""
    pid = store.worker_pid()
    if pid is not None and _can_connect(store.socket_path):
        return pid
    if pid is not None:
        store.kill_worker()
    store.worker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logf = open(store.worker_dir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rhode.federated.flower.worker",
                "--storage",
                str(store.root),
                "--watch-pid",
                str(watch_pid),
                "--idle-timeout",
                str(idle_timeout),
            ],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        logf.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (store.worker_dir / "worker.log").read_text(errors="replace")[-1500:]
            raise ProtocolError(f"the holder service exited at start (status {proc.returncode}):\n{tail}")
        if store.worker_pid() == proc.pid and _can_connect(store.socket_path):
            return proc.pid
        time.sleep(0.05)
    proc.kill()
    raise ProtocolError(f"the holder service did not start within {START_TIMEOUT:.0f} s")


def _can_connect(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
