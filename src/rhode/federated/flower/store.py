"""Node-local storage of a data holder: what survives between Flower messages.

In deployment each message may run in a fresh ``flwr-clientapp`` process, so a data holder keeps its
party state in a directory named by its node config (``storage``)::

    party.key        the secret share (mode 0600; written only by Party.save)
    context.rhode    the public context: CKKS parameters, CryptoContext, joint public key
    evalkeys.rhode   the joint relinearization and rotation keys (public; for the training worker)
    worker/          the training worker's socket, pid file and log (see rhode.federated.flower.worker)

The directory is created with mode 0700. Every file is replaced atomically (written to a temporary
name, then renamed), so a crash leaves the old or the new version.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from rhode.errors import ProtocolError
from rhode.federated.files import atomic_write

SECRET = "party.key"
CONTEXT = "context.rhode"
EVAL_KEYS = "evalkeys.rhode"
WORKER = "worker"


class NodeStore:
    """Paths and atomic reads/writes inside one data holder's storage directory.

    Args:
        root: the directory (``storage`` in the node config).
        create: create it (mode 0700) if missing.
    """

    def __init__(self, root: str | os.PathLike, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
            (self.root / WORKER).mkdir(exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"NodeStore({str(self.root)!r})"

    @property
    def secret_path(self) -> Path:
        return self.root / SECRET

    @property
    def worker_dir(self) -> Path:
        return self.root / WORKER

    @property
    def socket_path(self) -> Path:
        return self.worker_dir / "worker.sock"

    @property
    def pid_path(self) -> Path:
        return self.worker_dir / "worker.pid"

    def write(self, name: str, data: bytes) -> None:
        """Replace the public file ``name`` (0644)."""
        atomic_write(self.root / name, data)

    def read(self, name: str, what: str) -> bytes:
        """Read ``name``; a missing file is a :class:`ProtocolError` saying what is missing."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise ProtocolError(
                f"this data holder has no {what} in {self.root}: run collective key generation first "
                "(a new run without resume), or point the node config 'storage' at the right "
                "directory") from None

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    # -- worker process -------------------------------------------------------------------------------
    def worker_pid(self) -> int | None:
        """The pid recorded by a running worker, or None if there is none (or it has died)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def kill_worker(self, timeout: float = 5.0) -> None:
        """Stop the recorded worker (SIGTERM, then SIGKILL) and wait until the process is gone;
        remove its pid file and socket."""
        pid = self.worker_pid()
        if pid is not None:
            stop_process(pid, timeout)
        for p in (self.pid_path, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def stop_process(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM ``pid``, SIGKILL it if it still runs after ``timeout`` s, and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for sig in (signal.SIGKILL, None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.05)
        if sig is not None and process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
