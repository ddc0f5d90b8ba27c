"""Encrypted checkpoints, written atomically after each global iteration.

A checkpoint holds the encrypted global model (ciphertext bytes, one list per parameter), the run
state (iteration, history) and the fingerprint of the configuration and CKKS parameters it was made
with. It never holds a secret share. File layout::

    b"RHODECKP" | u32 header length | header (JSON) | blob 0 | blob 1 | ... | sha256 of all before

The file is written to a temporary name in the same directory, flushed, fsync'ed and renamed over the
previous checkpoint, so a crash at any moment leaves either the old or the new checkpoint, never a
half-written one. The in-process run's checkpoint state also records the sha256 of its run.json:
:func:`read_run` refuses a run.json that does not go with its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rhode.data import Stats
from rhode.errors import CheckpointError, RhodeError
from rhode.federated.config import RunConfig, run_fingerprint
from rhode.federated.dataprep import stats_from_json
from rhode.federated.files import CHECKPOINT_FILE, RUN_JSON, atomic_write, read_run_json

MAGIC = b"RHODECKP"
CHECKPOINT_NAME = CHECKPOINT_FILE


@dataclass
class Checkpoint:
    """Run state after ``iteration`` completed global iterations.

    Attributes:
        iteration: number of completed global iterations.
        fingerprint: configuration fingerprint (RunConfig.fingerprint + CKKS parameters).
        model: parameter name -> list of ciphertext bytes (the encrypted global model).
        state: JSON-serializable run state (history, counters).
    """

    iteration: int
    fingerprint: str
    model: dict[str, list[bytes]]
    state: dict[str, Any] = field(default_factory=dict)


def write_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Atomically write ``ckpt`` to ``directory/checkpoint.rhode``; return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(ckpt.model)
    blobs: list[bytes] = [b for name in names for b in ckpt.model[name]]
    header = {
        "iteration": ckpt.iteration,
        "fingerprint": ckpt.fingerprint,
        "params": [[name, len(ckpt.model[name])] for name in names],
        "blob_sizes": [len(b) for b in blobs],
        "state": ckpt.state,
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = b"".join([MAGIC, struct.pack("<I", len(head)), head, *blobs])
    target = directory / CHECKPOINT_NAME
    atomic_write(target, body + hashlib.sha256(body).digest(), mode=0o600)
    return target


def read_checkpoint(directory: str | Path, hint: str = "start a new run without --resume") -> Checkpoint:
    """Read and verify ``directory/checkpoint.rhode`` (CheckpointError if missing or corrupted)."""
    path = Path(directory) / CHECKPOINT_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {directory}; {hint}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if len(raw) < len(MAGIC) + 4 + 32 or not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a rhode checkpoint")
    body, digest = raw[:-32], raw[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted (checksum mismatch)")
    (head_len,) = struct.unpack_from("<I", body, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(body[start:start + head_len])
        offset = start + head_len
        blobs = []
        for size in header["blob_sizes"]:
            blobs.append(body[offset:offset + size])
            offset += size
        model: dict[str, list[bytes]] = {}
        i = 0
        for name, count in header["params"]:
            model[name] = blobs[i:i + count]
            i += count
        return Checkpoint(int(header["iteration"]), str(header["fingerprint"]), model,
                          dict(header.get("state", {})))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is malformed: {exc}") from None


class RunFiles(NamedTuple):
    """What :func:`read_run` read and checked."""

    meta: dict
    config: RunConfig
    stats: Stats
    checkpoint: Checkpoint | None


def read_run(d: str | Path, need_checkpoint: bool = False, hint: str | None = None) -> RunFiles:
    """run.json, its configuration, its global statistics and the checkpoint (None if there is none
    and ``need_checkpoint`` is false) of the run in ``d``. CheckpointError naming the file if run.json
    is damaged or edited (its configuration must give its fingerprint), or if it and the checkpoint are
    not of one run (same fingerprint, and the checkpoint records the sha256 of run.json). ``hint``:
    what the error says to do when there is no run (default: the --resume one)."""
    d = Path(d)
    meta = read_run_json(d) if hint is None else read_run_json(d, hint)
    path = d / RUN_JSON
    try:
        cfg = RunConfig.from_dict(meta["config"])
        fp = run_fingerprint(cfg)
        stats = stats_from_json(json.dumps(meta["global_stats"]))
    except RhodeError as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); restore the file or start a new run") from None
    if fp != meta["fingerprint"]:
        raise CheckpointError(f"{path} was edited: its configuration does not match its fingerprint; "
                              "restore the run.json the run wrote")
    has_ckpt = need_checkpoint or (d / CHECKPOINT_NAME).exists()
    ckpt = (read_checkpoint(d) if hint is None else read_checkpoint(d, hint)) if has_ckpt else None
    if ckpt is not None and ckpt.fingerprint != fp:
        raise CheckpointError(f"{path} and the checkpoint in {d} are of different runs (their fingerprints "
                              "differ); restore the run.json the run wrote")
    want = ckpt.state.get("run_json_sha256") if ckpt is not None else None
    if want is not None and want != file_sha256(path):
        raise CheckpointError(f"{path} differs from the run.json its checkpoint was made with (edited?); "
                              "restore the file the run wrote")
    return RunFiles(meta, cfg, stats, ckpt)


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
