"""Files every engine writes the same way: atomic replacement, the federation's public keys, and the
directories a run and a prediction own.

The aggregator's directory (``--out`` in-process, ``server-dir`` on Flower) holds only public
material under the same names in every engine::

    run.json          configuration, fingerprint, revealed global statistics, schema
    context.rhode     the public context: CKKS parameters, CryptoContext, joint public key
    evalkeys.rhode    the joint relinearization and rotation keys
    checkpoint.rhode  the encrypted global model after the last completed global iteration

Secret shares never go there: in-process each data holder's share is in ``parties/party-<i>.key``
(0600), beside the digest of its data (``party-<i>.digest``), on Flower in its node's storage
directory.

What rhode writes is 0600 (atomic: a temporary ``.tmp-<name>-*`` file in the same directory, renamed
over the target); the directories it makes for a run or a prediction are 0700. A new run goes only
into a new or empty directory, and rhode never replaces a file it did not write there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rhode.errors import CheckpointError, RhodeError

if TYPE_CHECKING:
    from rhode.mhe import MheContext

RUN_JSON = "run.json"
CONTEXT_FILE = "context.rhode"
EVAL_KEYS_FILE = "evalkeys.rhode"
CHECKPOINT_FILE = "checkpoint.rhode"
PARTIES_DIR = "parties"
#: the count of ciphertexts revealed under the run's keys (:mod:`rhode.federated.budget`)
DECRYPTIONS_FILE = "decryptions.json"
TMP_PREFIX = ".tmp-"
#: what a training run writes to its --out (beside parties/)
RUN_FILES = (RUN_JSON, CONTEXT_FILE, EVAL_KEYS_FILE, CHECKPOINT_FILE, DECRYPTIONS_FILE,
             "report.json", "predictions.csv", "loss.png", "predictions.png")
#: what ``rhode predict`` writes to its --out; the marker says that it did
PREDICT_MARKER = "predict.json"
PREDICT_FILES = ("report.json", "predictions.csv", "predictions.png")
_PARTY_FILE = re.compile(r"party-\d+\.(key|digest)")


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename) with permissions ``mode``
    (whatever the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
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


def _is_tmp_of(name: str, names) -> bool:
    """``name`` is a temporary file :func:`atomic_write` made for one of ``names``."""
    return name.startswith(TMP_PREFIX) and any(name.startswith(f"{TMP_PREFIX}{n}-") for n in names)


def remove_stale_tmp(directory: str | os.PathLike, names=RUN_FILES) -> None:
    """Remove the temporary files a killed earlier write of one of ``names`` left in ``directory``
    (and of a holder's files in its ``parties/``)."""
    d = Path(directory)
    for folder, of in ((d, names), (d / PARTIES_DIR, None)):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for p in folder.iterdir():
            if (_is_tmp_of(p.name, of) if of is not None else _is_party_tmp(p.name)) and p.is_file():
                p.unlink(missing_ok=True)


def _is_party_tmp(name: str) -> bool:
    return name.startswith(f"{TMP_PREFIX}party-")


def private_dir(path: str | os.PathLike) -> Path | None:
    """Make ``path`` (and missing parents) a directory of mode 0700; return the topmost directory this
    call created (None if ``path`` was there)."""
    path = Path(path)
    top = None
    for p in (path, *path.parents):
        if p.exists():
            break
        top = p
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return top


def remove_created(path: Path, top: Path | None) -> None:
    """Remove the now empty directories ``path`` up to ``top`` (what :func:`private_dir` made)."""
    if top is None:
        return
    for p in (path, *path.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _abandoned_keygen(d: Path, names: list[str]) -> bool:
    """Only what a run killed during its key generation leaves (keys, parties/ with shares and
    digests): nothing to resume, no run.json."""
    if not names or not set(names) <= {CONTEXT_FILE, EVAL_KEYS_FILE, DECRYPTIONS_FILE, PARTIES_DIR}:
        return False
    parties = d / PARTIES_DIR
    return not parties.exists() or (parties.is_dir() and not parties.is_symlink() and all(
        _PARTY_FILE.fullmatch(p.name) or _is_party_tmp(p.name) for p in parties.iterdir()))


def claim_run_dir(out: str | os.PathLike) -> Path | None:
    """The --out of a new run: made (0700) if missing; else it must be empty (a killed earlier run's
    temporary files, or what it left during key generation, are removed) and is set to 0700.
    CheckpointError if it holds a run or anything else. Returns the topmost directory made, if any."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a directory; choose another --out")
    if not out.exists():
        return private_dir(out)
    remove_stale_tmp(out)
    names = sorted(p.name for p in out.iterdir())
    if RUN_JSON in names or CHECKPOINT_FILE in names:
        raise CheckpointError(f"{out} already holds a run; continue it with --resume or choose another --out")
    if _abandoned_keygen(out, names):
        remove_run(out, None)
    elif names:
        raise CheckpointError(
            f"{out} is not empty ({_listing(names)}) and holds no rhode run; a run needs a new or empty "
            "directory: choose another --out")
    return private_dir(out)


def remove_run(out: Path, top: Path | None) -> None:
    """Remove what a new run wrote to ``out`` (its files, parties/ with the shares and digests,
    temporary files) and the directories it made: a run that stops before its first checkpoint
    leaves nothing behind."""
    remove_stale_tmp(out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    parties = out / PARTIES_DIR
    if parties.is_dir() and not parties.is_symlink():
        for p in parties.iterdir():
            if _PARTY_FILE.fullmatch(p.name) or _is_party_tmp(p.name):
                p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parties.rmdir()
    remove_created(out, top)


def claim_predict_dir(out: str | os.PathLike, model_dir: str | os.PathLike) -> Path | None:
    """The --out of ``rhode predict``: never a training run's directory (the --model one included),
    never one whose report.json/predictions.* rhode predict did not write (no :data:`PREDICT_MARKER`).
    Made 0700 if missing (or empty). Returns the topmost directory made, if any."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a directory; choose another --out")
    if not out.exists():
        return private_dir(out)
    if (Path(model_dir).exists() and out.samefile(model_dir)) or any(
            (out / n).exists() for n in (RUN_JSON, CHECKPOINT_FILE)):
        raise CheckpointError(f"{out} holds a training run; write the predictions to another --out")
    if not is_predict_dir(out):
        theirs = [n for n in (PREDICT_MARKER, *PREDICT_FILES) if (out / n).exists()]
        if theirs:
            raise CheckpointError(f"{out} already holds {', '.join(theirs)}, not written by rhode predict; "
                                  "choose another --out")
    remove_stale_tmp(out, (PREDICT_MARKER, *PREDICT_FILES))
    if not any(out.iterdir()):
        os.chmod(out, 0o700)
    return None


def is_predict_dir(out: Path) -> bool:
    """``out`` holds the marker a previous ``rhode predict`` wrote."""
    try:
        return json.loads((out / PREDICT_MARKER).read_text()).get("written_by") == "rhode predict"
    except (OSError, ValueError, AttributeError):
        return False


def remove_predictions(out: Path, top: Path | None) -> None:
    """Remove what a failed ``rhode predict`` wrote to the directory it made."""
    if top is None:
        return
    remove_stale_tmp(out, (PREDICT_MARKER, *PREDICT_FILES))
    for name in (PREDICT_MARKER, *PREDICT_FILES):
        (out / name).unlink(missing_ok=True)
    remove_created(out, top)


def save_public_keys(directory: str | os.PathLike, ctx: MheContext) -> None:
    """The public context and the joint evaluation keys to ``directory``."""
    d = Path(directory)
    from rhode.mhe import serial as S  # deferred: the Flower relay uses this module without OpenFHE

    atomic_write(d / CONTEXT_FILE, S.context_to_bytes(ctx))
    atomic_write(d / EVAL_KEYS_FILE, S.eval_keys_to_bytes(ctx))


def load_public_keys(directory: str | os.PathLike) -> MheContext:
    """Inverse of :func:`save_public_keys` (CheckpointError if missing or unusable)."""
    from rhode.mhe import serial as S

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


#: the fields of run.json every reader needs, and their JSON types
RUN_JSON_FIELDS = {"config": dict, "fingerprint": str, "global_stats": dict, "n_features": int}


#: what to do when --resume finds no run (callers with another flag, e.g. predict's --model, say theirs)
RESUME_HINT = "start one without --resume"


def read_run_json(directory: str | os.PathLike, hint: str = RESUME_HINT) -> dict:
    """The run.json of ``directory`` (CheckpointError naming the file if missing, corrupted or
    without one of :data:`RUN_JSON_FIELDS`; ``hint`` says what to do when it is missing)."""
    path = Path(directory) / RUN_JSON
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no run in {directory} (no {RUN_JSON}); {hint}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable or corrupted: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is corrupted (not a JSON object)")
    for key, typ in RUN_JSON_FIELDS.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            kind = {dict: "object", str: "string", int: "integer"}[typ]
            raise CheckpointError(f"{path} is damaged: its '{key}' is missing or not a JSON {kind}; "
                                  "the run cannot be used (restore the file or start a new run)")
    return meta


def digest_path(out: str | os.PathLike, index: int) -> Path:
    """Where data holder ``index`` of an in-process run keeps the digest of its data (beside its
    secret share)."""
    return Path(out) / PARTIES_DIR / f"party-{index}.digest"


def save_data_digest(out: str | os.PathLike, index: int, source: str, sha256: str) -> None:
    """Data holder ``index``'s digest of the data the run begins with (0600, in its parties/ storage)."""
    path = digest_path(out, index)
    if not path.parent.exists():
        private_dir(path.parent)
    atomic_write(path, (json.dumps({"source": source, "sha256": sha256}) + "\n").encode())


def read_data_digest(out: str | os.PathLike, index: int) -> str | None:
    """The sha256 :func:`save_data_digest` stored (None if there is none; CheckpointError if damaged)."""
    path = digest_path(out, index)
    try:
        value = json.loads(path.read_text())["sha256"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} is damaged; start a new run in another --out") from None
    if not isinstance(value, str):
        raise CheckpointError(f"{path} is damaged; start a new run in another --out")
    return value
