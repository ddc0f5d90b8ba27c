"""What travels between the aggregator and the data holders: small typed payloads.

A payload is ``(config, blobs)``. ``config`` holds scalars only (ints, floats, strings, bools, lists of
them: rounds, levels, counts, party indices). A blob is either bytes or a :class:`Blob`: a value
(ciphertexts, keys, shares, an encrypted model) together with the function that gives its byte form.
The in-process transport hands :class:`Blob` values over as they are (no serialization); the worker
and Flower transports call :meth:`Payload.encoded` first, and the receiver decodes bytes with
:meth:`Payload.take`, which checks them (:mod:`rhode.mhe.serial` validates kind, parameters, digest,
level and key tag). The same payloads cross the node-local worker socket and the querier's files as a
:func:`pack_bundle`.

Every decoder checks types and presence and raises :class:`~rhode.errors.SerializationError`, so a
corrupted or malformed payload is a rhode error, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rhode.errors import RhodeError, SerializationError


@dataclass(frozen=True)
class Blob:
    """A value on its way to another party, and how to turn it into bytes if it must cross a process
    boundary (``encode()``). ``nbytes`` (optional) gives its size without encoding it."""

    value: Any
    encode: Callable[[], bytes]
    nbytes: Callable[[], int] | None = None

    def size(self) -> int:
        return self.nbytes() if self.nbytes is not None else len(self.encode())


CONFIG_TYPES = (int, float, str, bool)
ERROR_KEY = "rhode-error"
ERROR_KIND_KEY = "rhode-error-kind"


@dataclass
class Payload:
    """A message body: scalar ``config`` and named byte ``blobs``."""

    config: dict = field(default_factory=dict)
    blobs: dict[str, bytes | Blob] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of the blobs (what dominates the traffic), encoded or not."""
        return sum(b.size() if isinstance(b, Blob) else len(b) for b in self.blobs.values())

    def encoded(self) -> Payload:
        """The same payload with every blob in its byte form (for a process boundary)."""
        return Payload(
            dict(self.config), {k: b.encode() if isinstance(b, Blob) else b for k, b in self.blobs.items()}
        )

    def take(self, name: str, decode: Callable[[bytes], Any]) -> Any:
        """The value of blob ``name``: as handed over in process, else ``decode(bytes)``."""
        b = self.blobs.get(name)
        if isinstance(b, Blob):
            return b.value
        return decode(self.blob(name))

    # -- typed access with rhode errors ---------------------------------------------------------------
    def blob(self, name: str) -> bytes:
        """The blob ``name`` (SerializationError if absent or not bytes)."""
        b = self.blobs.get(name)
        if isinstance(b, Blob):
            return b.encode()
        if not isinstance(b, (bytes, bytearray)):
            raise SerializationError(f"message has no '{name}' payload")
        return bytes(b)

    def get(self, name: str, kind: type, default=None):
        """Config value ``name`` of type ``kind`` (``default`` if absent and a default is given)."""
        if name not in self.config:
            if default is not None:
                return default
            raise SerializationError(f"message has no '{name}' field")
        v = self.config[name]
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            ok, v = True, float(v)
        if not ok:
            raise SerializationError(
                f"message field '{name}' must be {kind.__name__}, got {type(v).__name__}"
            )
        return v

    def int_list(self, name: str) -> list[int]:
        v = self.config.get(name)
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise SerializationError(f"message field '{name}' must be a list of integers")
        return list(v)

    @property
    def error(self) -> str | None:
        """The rhode error a data holder answered with, if any."""
        e = self.config.get(ERROR_KEY)
        return e if isinstance(e, str) else None


def error_payload(exc: BaseException) -> Payload:
    """The reply of a data holder that could not do what it was asked. A :class:`RhodeError` keeps its
    message (rhode messages never hold secrets); anything else only says that an internal error
    happened (details stay in the holder's own log)."""
    if isinstance(exc, RhodeError):
        text, kind = str(exc), type(exc).__name__
    else:
        text, kind = f"internal error ({type(exc).__name__}); see this data holder's log", "InternalError"
    return Payload({ERROR_KEY: text, ERROR_KIND_KEY: kind})


def check_config(config: Mapping) -> dict:
    """Validate that a config holds scalars (or lists of scalars) only."""
    out = {}
    for k, v in config.items():
        if not isinstance(k, str):
            raise SerializationError("config keys must be strings")
        if isinstance(v, list):
            if not all(isinstance(x, CONFIG_TYPES) for x in v):
                raise SerializationError(f"config field '{k}' must hold scalars")
        elif not isinstance(v, CONFIG_TYPES):
            raise SerializationError(f"config field '{k}' has unsupported type {type(v).__name__}")
        out[k] = v
    return out


# -- bundles (worker socket, querier files) ------------------------------------------------------------
BUNDLE_MAGIC = b"RHDB"
_BHEAD = struct.Struct("<4sIQ")  # magic, header length, body length


def bundle_parts(p: Payload) -> list[bytes]:
    """The byte strings that make :func:`pack_bundle` of ``p``, in order and not joined (a stream can
    send them one by one without a copy of the whole): magic | header length | body length | header
    (JSON: config and blob sizes) | blobs | blake2b-128 of everything before."""
    p = p.encoded()
    names = list(p.blobs)
    head = json.dumps(
        {"config": check_config(p.config), "blobs": [[n, len(p.blobs[n])] for n in names]}, sort_keys=True
    ).encode()
    blobs = [bytes(p.blobs[n]) for n in names]
    parts = [_BHEAD.pack(BUNDLE_MAGIC, len(head), sum(len(b) for b in blobs)), head, *blobs]
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part)
    return [*parts, digest.digest()]


def pack_bundle(p: Payload) -> bytes:
    """``p`` as one byte string (:func:`bundle_parts`, joined)."""
    return b"".join(bundle_parts(p))


def unpack_bundle(data: bytes | bytearray | memoryview, what: str = "bundle") -> Payload:
    """Inverse of :func:`pack_bundle` (SerializationError on any inconsistency). ``data`` is read in
    place (each blob is copied out once)."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < _BHEAD.size + 16:
        raise SerializationError(f"{what} is truncated")
    view = memoryview(data).cast("B")
    magic, hlen, blen = _BHEAD.unpack_from(view)
    if magic != BUNDLE_MAGIC:
        raise SerializationError(f"{what} is not a rhode bundle")
    if len(view) != _BHEAD.size + hlen + blen + 16:
        raise SerializationError(f"{what} is truncated or has trailing bytes")
    if hashlib.blake2b(view[:-16], digest_size=16).digest() != bytes(view[-16:]):
        raise SerializationError(f"{what} is corrupted (digest mismatch)")
    try:
        head = json.loads(bytes(view[_BHEAD.size : _BHEAD.size + hlen]).decode())
        config = check_config(head["config"])
        table = [(str(n), int(s)) for n, s in head["blobs"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SerializationError(f"{what} has an unreadable header") from None
    if sum(s for _, s in table) != blen or any(s < 0 for _, s in table):
        raise SerializationError(f"{what} has an inconsistent blob table")
    pos = _BHEAD.size + hlen
    blobs = {}
    for name, size in table:
        blobs[name] = bytes(view[pos : pos + size])
        pos += size
    return Payload(config, blobs)
