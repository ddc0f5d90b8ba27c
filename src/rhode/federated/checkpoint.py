"""Encrypted checkpoints, written atomically after each global iteration.

A checkpoint holds the encrypted global model (ciphertext bytes, one list per parameter), the run
state (iteration, history) and the fingerprint of the configuration and CKKS parameters it was made
with. It never holds a secret share. File layout::

    b"RHODECKP" | u32 header length | header (JSON) | blob 0 | blob 1 | ... | sha256 of all before

The file is written to a temporary name in the same directory, flushed, fsync'ed and renamed over the
previous checkpoint, so a crash at any moment leaves either the old or the new checkpoint, never a
half-written one.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhode.errors import CheckpointError
from rhode.federated.files import atomic_write

MAGIC = b"RHODECKP"
CHECKPOINT_NAME = "checkpoint.rhode"


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


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """Read and verify ``directory/checkpoint.rhode`` (CheckpointError if missing or corrupted)."""
    path = Path(directory) / CHECKPOINT_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {directory}; start a new run without --resume") from None
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
