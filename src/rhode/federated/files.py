"""Files every engine writes the same way: atomic replacement, and the federation's public keys.

The aggregator's directory (``--out`` in-process, ``server-dir`` on Flower) holds only public
material under the same names in every engine::

    run.json          configuration, fingerprint, revealed global statistics, schema
    context.rhode     the public context: CKKS parameters, CryptoContext, joint public key
    evalkeys.rhode    the joint relinearization and rotation keys
    checkpoint.rhode  the encrypted global model after the last completed global iteration

Secret shares never go there: in-process each data holder's share is in ``parties/party-<i>.key``
(0600), on Flower in its node's storage directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rhode.errors import CheckpointError, RhodeError
from rhode.mhe import MheContext
from rhode.mhe import serial as S

RUN_JSON = "run.json"
CONTEXT_FILE = "context.rhode"
EVAL_KEYS_FILE = "evalkeys.rhode"
PARTIES_DIR = "parties"


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename) with permissions ``mode``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_public_keys(directory: str | os.PathLike, ctx: MheContext) -> None:
    """The public context and the joint evaluation keys to ``directory``."""
    d = Path(directory)
    atomic_write(d / CONTEXT_FILE, S.context_to_bytes(ctx))
    atomic_write(d / EVAL_KEYS_FILE, S.eval_keys_to_bytes(ctx))


def load_public_keys(directory: str | os.PathLike) -> MheContext:
    """Inverse of :func:`save_public_keys` (CheckpointError if missing or unusable)."""
    d = Path(directory)
    try:
        ctx = S.context_from_bytes((d / CONTEXT_FILE).read_bytes())
        S.load_eval_keys(ctx, (d / EVAL_KEYS_FILE).read_bytes())
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"{exc.filename} is missing; the keys of this run are lost, start a new run"
        ) from None
    except RhodeError as exc:
        raise CheckpointError(f"the keys in {d} are unusable: {exc}") from None
    return ctx


def read_run_json(directory: str | os.PathLike) -> dict:
    """The run.json of ``directory`` (CheckpointError if missing or corrupted)."""
    path = Path(directory) / RUN_JSON
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no run in {directory} (no {RUN_JSON}); start one without --resume") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable or corrupted: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is corrupted (not a JSON object)")
    return meta
