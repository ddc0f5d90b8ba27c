"""What travels between the aggregator and the data holders: small typed payloads.

A payload is ``(config, blobs)``: ``config`` holds scalars only (ints, floats, strings, bools, lists
of them: rounds, levels, counts, party indices), ``blobs`` holds bytes only (ciphertexts, keys and
shares, each a framed OpenFHE BINARY string from :mod:`rhode.mhe.serial`). On Flower the config is a
``ConfigRecord`` and every blob a raw-bytes ``Array`` in an ``ArrayRecord`` (chunked by Flower, never
JSON or config strings); the same payloads also cross the node-local socket of the training worker
and the querier's request/response files as a :func:`pack_bundle`.

Every decoder checks types and presence and raises :class:`~rhode.errors.SerializationError`, so a
corrupted or malformed payload is a rhode error, never a crash. The framed blobs are then checked
again (kind, parameters, digest, level, key tag) by :mod:`rhode.mhe.serial` when they are parsed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from rhode.errors import RhodeError, SerializationError

CONFIG_TYPES = (int, float, str, bool)
ERROR_KEY = "rhode-error"
ERROR_KIND_KEY = "rhode-error-kind"


@dataclass
class Payload:
    """A message body: scalar ``config`` and named byte ``blobs``."""

    config: dict = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of the blobs (what dominates the traffic)."""
        return sum(len(b) for b in self.blobs.values())

    # -- typed access with rhode errors ---------------------------------------------------------------
    def blob(self, name: str) -> bytes:
        """The blob ``name`` (SerializationError if absent or not bytes)."""
        b = self.blobs.get(name)
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
                f"message field '{name}' must be {kind.__name__}, got {type(v).__name__}")
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


# -- Flower records -----------------------------------------------------------------------------------
def to_recorddict(p: Payload):
    """A Flower ``RecordDict``: ``config`` -> ConfigRecord, every blob -> a raw-bytes Array."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    arrays = {name: Array(dtype="bytes", shape=(len(b),), stype="raw", data=bytes(b))
              for name, b in p.blobs.items()}
    return RecordDict({"config": ConfigRecord(check_config(p.config)), "blobs": ArrayRecord(arrays)})


def from_recorddict(rd) -> Payload:
    """Inverse of :func:`to_recorddict`; anything unexpected is a SerializationError."""
    try:
        cfg_rec = rd.config_records.get("config") if hasattr(rd, "config_records") else None
        arr_rec = rd.array_records.get("blobs") if hasattr(rd, "array_records") else None
    except Exception:
        raise SerializationError("message content is not a rhode payload") from None
    if cfg_rec is None or arr_rec is None:
        raise SerializationError("message content is not a rhode payload (config or blobs missing)")
    config = check_config(dict(cfg_rec))
    blobs = {}
    for name in arr_rec:
        arr = arr_rec[name]
        if getattr(arr, "stype", None) != "raw" or getattr(arr, "dtype", None) != "bytes":
            raise SerializationError(f"payload '{name}' is not a raw-bytes array")
        data = arr.data
        if not isinstance(data, (bytes, bytearray)):
            raise SerializationError(f"payload '{name}' is not bytes")
        blobs[name] = bytes(data)
    return Payload(config, blobs)


# -- bundles (worker socket, querier files) ------------------------------------------------------------
BUNDLE_MAGIC = b"RHDB"
_BHEAD = struct.Struct("<4sIQ")  # magic, header length, body length


def pack_bundle(p: Payload) -> bytes:
    """``p`` as one byte string: magic | header length | body length | header (JSON: config and blob
    sizes) | blobs | blake2b-128 of everything before."""
    names = list(p.blobs)
    head = json.dumps({"config": check_config(p.config), "blobs": [[n, len(p.blobs[n])] for n in names]},
                      sort_keys=True).encode()
    body = b"".join(bytes(p.blobs[n]) for n in names)
    data = _BHEAD.pack(BUNDLE_MAGIC, len(head), len(body)) + head + body
    return data + hashlib.blake2b(data, digest_size=16).digest()


def unpack_bundle(data: bytes, what: str = "bundle") -> Payload:
    """Inverse of :func:`pack_bundle` (SerializationError on any inconsistency)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _BHEAD.size + 16:
        raise SerializationError(f"{what} is truncated")
    data = bytes(data)
    magic, hlen, blen = _BHEAD.unpack_from(data)
    if magic != BUNDLE_MAGIC:
        raise SerializationError(f"{what} is not a rhode bundle")
    if len(data) != _BHEAD.size + hlen + blen + 16:
        raise SerializationError(f"{what} is truncated or has trailing bytes")
    if hashlib.blake2b(data[:-16], digest_size=16).digest() != data[-16:]:
        raise SerializationError(f"{what} is corrupted (digest mismatch)")
    try:
        head = json.loads(data[_BHEAD.size:_BHEAD.size + hlen].decode())
        config = check_config(head["config"])
        table = [(str(n), int(s)) for n, s in head["blobs"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SerializationError(f"{what} has an unreadable header") from None
    if sum(s for _, s in table) != blen or any(s < 0 for _, s in table):
        raise SerializationError(f"{what} has an inconsistent blob table")
    pos = _BHEAD.size + hlen
    blobs = {}
    for name, size in table:
        blobs[name] = data[pos:pos + size]
        pos += size
    return Payload(config, blobs)
