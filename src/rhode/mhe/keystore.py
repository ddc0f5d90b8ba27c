"""Saving and reloading an in-process federation's keys (resume, ``rhode predict``).

Public material goes to one directory (``context.bin``: parameters, CryptoContext, joint public key;
``eval_keys.bin``: joint relinearization and rotation keys). Each data holder's secret share goes to
its own file ``party-<i>.key`` (mode 0600) in another directory: in a deployment each lives on its
holder's machine, and no secret ever enters the public directory or a checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rhode.errors import CheckpointError, RhodeError
from rhode.mhe.codec import context_from_bytes, context_to_bytes, eval_keys_to_bytes, load_eval_keys
from rhode.mhe.collective import LocalCollective
from rhode.mhe.party import Party

CONTEXT_FILE = "context.bin"
EVAL_KEYS_FILE = "eval_keys.bin"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_collective(collective: LocalCollective, keys_dir: str | Path, parties_dir: str | Path) -> None:
    """Write the public context and evaluation keys to ``keys_dir`` and every party's secret share to
    ``parties_dir/party-<i>.key`` (0600; the directory itself 0700)."""
    keys_dir, parties_dir = Path(keys_dir), Path(parties_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    parties_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(parties_dir, 0o700)
    ctx = collective.context
    _atomic_write(keys_dir / CONTEXT_FILE, context_to_bytes(ctx))
    _atomic_write(keys_dir / EVAL_KEYS_FILE, eval_keys_to_bytes(ctx))
    for party in collective.parties:
        party.save(parties_dir / f"party-{party.index}.key")


def load_collective(keys_dir: str | Path, parties_dir: str | Path) -> LocalCollective:
    """Reload what :func:`save_collective` wrote (CheckpointError if missing or corrupted)."""
    keys_dir, parties_dir = Path(keys_dir), Path(parties_dir)
    try:
        ctx = context_from_bytes((keys_dir / CONTEXT_FILE).read_bytes())
        load_eval_keys(ctx, (keys_dir / EVAL_KEYS_FILE).read_bytes())
        files = sorted(parties_dir.glob("party-*.key"))
        parties = sorted((Party.load(ctx, f) for f in files), key=lambda p: p.index)
    except FileNotFoundError as exc:
        raise CheckpointError(f"missing key file {exc.filename}; the run cannot be resumed") from None
    except RhodeError as exc:
        raise CheckpointError(f"the keys in {keys_dir.parent} are unusable: {exc}") from None
    if [p.index for p in parties] != list(range(len(parties))) or len(parties) < 2:
        raise CheckpointError(f"{parties_dir} does not hold the secret shares of parties 0..N-1")
    return LocalCollective.from_parts(ctx, parties)
