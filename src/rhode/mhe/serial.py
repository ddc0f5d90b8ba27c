"""Bytes framing for everything that crosses a process boundary.

Every serialized object is an OpenFHE BINARY payload behind a small rhode header::

    magic "RHDE" | version u8 | kind u8 | params hash (8 bytes) | meta length u32 | payload length u64
    | blake2b-128 digest of (header, meta, payload) | meta (JSON) | payload

The header is checked (magic, version, kind, parameters, lengths, digest) *before* OpenFHE sees the
payload, so corrupted, truncated or foreign bytes are rejected with a :class:`SerializationError`
instead of reaching OpenFHE's parser, which may crash the interpreter on garbage.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct

from rhode.errors import SerializationError
from rhode.mhe.params import CkksParams

MAGIC = b"RHDE"
VERSION = 1
_HEAD = struct.Struct("<4sBB8sIQ")
_DIGEST = 16
MAX_META = 1 << 16


class Kind(enum.IntEnum):
    """What a framed byte string holds."""

    CONTEXT = 1
    PUBLIC_KEY = 2
    SECRET_SHARE = 3
    CIPHERTEXTS = 4
    RELIN_KEY = 5
    ROTATION_KEYS = 6
    PUBLIC_KEY_SHARE = 7
    RELIN_SHARE_ROUND1 = 8
    RELIN_SHARE_ROUND2 = 9
    ROTATION_KEY_SHARE = 10
    DECRYPTION_SHARES = 11
    REFRESH_SHARES = 12
    KEY_SWITCH_SHARES = 13
    REFRESH_REQUEST = 14
    QUERIER_PUBLIC_KEY = 15


def params_hash(params: CkksParams) -> bytes:
    """8-byte digest of the parameters (objects made under other parameters are rejected)."""
    blob = json.dumps(params.to_dict(), sort_keys=True).encode()
    return hashlib.blake2b(blob, digest_size=8).digest()


def _digest(head: bytes, meta: bytes, payload: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    h.update(head)
    h.update(meta)
    h.update(payload)
    return h.digest()


def frame(kind: Kind, params: CkksParams, payload: bytes, meta: dict | None = None) -> bytes:
    """Wrap an OpenFHE BINARY ``payload`` (and a small JSON ``meta`` dict) in a rhode header."""
    m = json.dumps(meta or {}, sort_keys=True).encode()
    head = _HEAD.pack(MAGIC, VERSION, int(kind), params_hash(params), len(m), len(payload))
    return head + _digest(head, m, payload) + m + payload


def peek_kind(data: bytes) -> Kind:
    """The kind of a framed byte string (header check only)."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < _HEAD.size:
        raise SerializationError("not rhode data: too short for a header")
    magic, version, kind = _HEAD.unpack_from(bytes(data[:_HEAD.size]))[:3]
    if magic != MAGIC or version != VERSION:
        raise SerializationError("not rhode data (bad magic or version)")
    try:
        return Kind(kind)
    except ValueError:
        raise SerializationError(f"unknown object kind {kind}") from None


def unframe(kind: Kind, params: CkksParams | None, data: bytes) -> tuple[bytes, dict]:
    """Check the header of ``data`` and return ``(payload, meta)``.

    Raises:
        SerializationError: wrong type, magic, version, kind, parameters, length or digest.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    got = peek_kind(data)
    if got != kind:
        raise SerializationError(f"expected a {kind.name.lower()}, got a {got.name.lower()}")
    _, _, _, phash, mlen, plen = _HEAD.unpack_from(data)
    if params is not None and phash != params_hash(params):
        raise SerializationError(
            f"{kind.name.lower()} was made under other CKKS parameters than preset {params.name!r}")
    start = _HEAD.size + _DIGEST
    if mlen > MAX_META or len(data) != start + mlen + plen:
        raise SerializationError(f"{kind.name.lower()} is truncated or has trailing bytes")
    head = data[:_HEAD.size]
    meta_b = data[start:start + mlen]
    payload = data[start + mlen:]
    if _digest(head, meta_b, payload) != data[_HEAD.size:start]:
        raise SerializationError(f"{kind.name.lower()} is corrupted (digest mismatch)")
    try:
        meta = json.loads(meta_b.decode()) if mlen else {}
    except (UnicodeDecodeError, ValueError):
        raise SerializationError(f"{kind.name.lower()} has unreadable metadata") from None
    if not isinstance(meta, dict):
        raise SerializationError(f"{kind.name.lower()} has unreadable metadata")
    return payload, meta


def header_params_hash(data: bytes) -> bytes:
    """The parameter hash stored in a framed byte string (header check only)."""
    peek_kind(data)
    return _HEAD.unpack_from(bytes(data[:_HEAD.size]))[3]
