"""Bytes framing and typed codecs for everything that crosses a process boundary.

The share types of :mod:`rhode.mhe.protocols` build their ``to_bytes`` / ``from_bytes`` on the codecs
here; the federated layer frames the context, ciphertexts, public keys and evaluation keys with them.

Every serialized object is an OpenFHE BINARY payload behind a small rhode header::

    magic "RHDE" | version u8 | kind u8 | params hash (8 bytes) | meta length u32 | payload length u64
    | blake2b-128 digest of (header, meta, payload) | meta (JSON) | payload

The header is checked (magic, version, kind, parameters, lengths, digest) *before* OpenFHE sees the
payload, so corrupted, truncated or foreign bytes are rejected with a :class:`SerializationError`
instead of reaching OpenFHE's parser, which may crash the interpreter on garbage.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import struct
from collections.abc import Iterable

import numpy as np
import openfhe as fhe

from rhode.errors import ParameterError, SerializationError
from rhode.mhe.context import MheContext
from rhode.mhe.params import CkksParams

MAGIC = b"RHDE"
VERSION = 1
_HEAD = struct.Struct("<4sBB8sIQ")
_DIGEST = 16
MAX_META = 1 << 16


class Kind(enum.IntEnum):
    """What a framed byte string holds.

    The value is the kind byte of the header, part of the byte format of files already written
    (``context.rhode``, ``evalkeys.rhode``, secret-share files): never renumber. 5 and 6 (a joint
    relinearization key, joint rotation keys on their own) are retired: the joint evaluation keys
    travel together as ``EVAL_KEYS``; do not reuse them."""

    CONTEXT = 1
    PUBLIC_KEY = 2
    SECRET_SHARE = 3
    CIPHERTEXTS = 4
    PUBLIC_KEY_SHARE = 7
    RELIN_SHARE_ROUND1 = 8
    RELIN_SHARE_ROUND2 = 9
    ROTATION_KEY_SHARE = 10
    DECRYPTION_SHARES = 11
    REFRESH_SHARES = 12
    KEY_SWITCH_SHARES = 13
    REFRESH_REQUEST = 14
    QUERIER_PUBLIC_KEY = 15
    EVAL_KEYS = 16
    KEY_PIECE = 17  # a Shamir piece of a secret share (rhode.mhe.protocols.recovery)
    REFRESHED_C0 = 18  # c0 parts of refreshed ciphertexts (c1 = their request's CRP: refresh.rejoin)


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


# -- typed (de)serializers ---------------------------------------------------------------------------
# Everything below frames OpenFHE BINARY payloads; deserializers check the frame first, then parse
# with OpenFHE inside a guard, then check what OpenFHE returned (ring, level, element count, key tag).

MAX_OBJECTS = 1 << 16


def _pack(kind: Kind, params: CkksParams, objs: list, meta: dict | None = None) -> bytes:
    blobs = [bytes(fhe.Serialize(o, fhe.BINARY)) for o in objs]
    m = dict(meta or {})
    m["sizes"] = [len(b) for b in blobs]
    return frame(kind, params, b"".join(blobs), m)


def _split(kind: Kind, params: CkksParams, data: bytes, count: int | None) -> tuple[list[bytes], dict]:
    payload, meta = unframe(kind, params, data)
    sizes = meta.get("sizes")
    what = kind.name.lower()
    if (not isinstance(sizes, list) or not sizes or len(sizes) > MAX_OBJECTS
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
            or sum(sizes) != len(payload)):
        raise SerializationError(f"{what} has an inconsistent object table")
    if count is not None and len(sizes) != count:
        raise SerializationError(f"expected {count} objects in the {what}, got {len(sizes)}")
    out, pos = [], 0
    for s in sizes:
        out.append(payload[pos:pos + s])
        pos += s
    return out, meta


def _parse(fn, blob: bytes, what: str):
    try:
        obj = fn(blob, fhe.BINARY)
    except Exception:
        raise SerializationError(f"{what}: OpenFHE could not parse the payload") from None
    if obj is None:
        raise SerializationError(f"{what}: OpenFHE could not parse the payload")
    return obj


@contextlib.contextmanager
def _no_crt_precompute():
    """Deserialize without OpenFHE's CRT precomputation for the crypto parameters each object
    carries (most of its deserialization time; ``bench/deserialized_ops.py`` measures both). Safe
    only for objects of an already loaded context: their context resolves to the loaded one, whose
    tables exist, and the callers reject any other."""
    fhe.DisablePrecomputeCRTTablesAfterDeserializaton()
    try:
        yield
    finally:
        fhe.EnablePrecomputeCRTTablesAfterDeserializaton()


def _check_ring(obj, params: CkksParams, what: str) -> None:
    try:
        ring = obj.GetCryptoContext().GetRingDimension()
    except Exception:
        raise SerializationError(f"{what} is not bound to a CKKS context") from None
    if ring != params.ring_dim:
        raise SerializationError(f"{what} has ring dimension {ring}, expected {params.ring_dim}")


def _check_tag(obj, tag: str | None, what: str) -> None:
    if tag is not None and obj.GetKeyTag() != tag:
        raise SerializationError(f"{what} is under another key than expected")


# context ------------------------------------------------------------------------------------------------
def context_to_bytes(context: MheContext) -> bytes:
    """The public context: parameters, CryptoContext, joint public key (if set), rotation indices.

    Evaluation keys travel separately (:func:`eval_keys_to_bytes`)."""
    objs = [context.cc] + ([context.public_key] if context.public_key is not None else [])
    meta = {"params": context.params.to_dict(), "rotations": sorted(context.rotation_indices),
            "has_public_key": context.public_key is not None}
    return _pack(Kind.CONTEXT, context.params, objs, meta)


def context_from_bytes(data: bytes) -> MheContext:
    """Rebuild an :class:`~rhode.mhe.context.MheContext` from :func:`context_to_bytes` output."""
    payload, meta = unframe(Kind.CONTEXT, None, data)
    try:
        params = CkksParams.from_dict(meta.get("params"))
    except (ParameterError, TypeError, ValueError):
        raise SerializationError("context carries invalid CKKS parameters") from None
    if header_params_hash(data) != params_hash(params):
        raise SerializationError("context header does not match its parameters")
    blobs, meta = _split(Kind.CONTEXT, params, data, None)
    has_pk = meta.get("has_public_key") is True
    if len(blobs) != 1 + int(has_pk):
        raise SerializationError("context has an unexpected number of objects")
    cc = _parse(fhe.DeserializeCryptoContextString, blobs[0], "context")
    try:
        ok = cc.GetRingDimension() == params.ring_dim and cc.GetMultiplicativeDepth() >= params.depth
    except Exception:
        ok = False
    if not ok:
        raise SerializationError("context does not match its parameters")
    ctx = MheContext(params, cc)
    if has_pk:
        pk = _parse(fhe.DeserializePublicKeyString, blobs[1], "public key")
        _check_ring(pk, params, "public key")
        ctx.public_key = pk
    rotations = meta.get("rotations", [])
    if not isinstance(rotations, list) or not all(isinstance(r, int) for r in rotations):
        raise SerializationError("context has an invalid rotation list")
    ctx.rotation_indices = ctx.normalize_rotations(rotations)
    return ctx


# single keys --------------------------------------------------------------------------------------------
# One OpenFHE key object per frame; its type follows from the kind.
_KEY_PARSERS = {
    Kind.PUBLIC_KEY: fhe.DeserializePublicKeyString,
    Kind.PUBLIC_KEY_SHARE: fhe.DeserializePublicKeyString,
    Kind.QUERIER_PUBLIC_KEY: fhe.DeserializePublicKeyString,
    Kind.RELIN_SHARE_ROUND1: fhe.DeserializeEvalKeyString,
    Kind.RELIN_SHARE_ROUND2: fhe.DeserializeEvalKeyString,
}
_PUBLIC_KEYS = (Kind.PUBLIC_KEY, Kind.PUBLIC_KEY_SHARE, Kind.QUERIER_PUBLIC_KEY)


def _key_kind(kind: Kind, kinds: Iterable[Kind] = tuple(_KEY_PARSERS)) -> None:
    if kind not in kinds:
        raise SerializationError(f"{kind.name.lower()} is not a kind of key")


def key_to_bytes(context: MheContext, key: fhe.PublicKey | fhe.EvalKey, kind: Kind) -> bytes:
    """One key: a public key (the joint one, a party's share, a querier's) or a relinearization-key
    share (round 1 or 2)."""
    _key_kind(kind)
    return _pack(kind, context.params, [key])


def key_from_bytes(context: MheContext, data: bytes, kind: Kind,
                   key_tag: str | None = None) -> fhe.PublicKey | fhe.EvalKey:
    """Inverse of :func:`key_to_bytes`: checks the ring (public keys; an OpenFHE evaluation key does
    not name its context) and, if given, ``key_tag``."""
    _key_kind(kind)
    what = kind.name.lower()
    (blob,), _ = _split(kind, context.params, data, 1)
    key = _parse(_KEY_PARSERS[kind], blob, what)
    if kind in _PUBLIC_KEYS:
        _check_ring(key, context.params, what)
    _check_tag(key, key_tag, what)
    return key


def public_key_to_bytes(context: MheContext, pk: fhe.PublicKey, kind: Kind = Kind.PUBLIC_KEY) -> bytes:
    """:func:`key_to_bytes` restricted to public keys (by default the joint one)."""
    _key_kind(kind, _PUBLIC_KEYS)
    return key_to_bytes(context, pk, kind)


def public_key_from_bytes(context: MheContext, data: bytes, kind: Kind = Kind.PUBLIC_KEY,
                          key_tag: str | None = None) -> fhe.PublicKey:
    """:func:`key_from_bytes` restricted to public keys (by default the joint one)."""
    _key_kind(kind, _PUBLIC_KEYS)
    return key_from_bytes(context, data, kind, key_tag)


# ciphertexts and ciphertext-shaped shares ----------------------------------------------------------------
_CT_ELEMENTS = {Kind.CIPHERTEXTS: {2}, Kind.DECRYPTION_SHARES: {1}, Kind.KEY_SWITCH_SHARES: {2},
                Kind.REFRESH_SHARES: {1}, Kind.REFRESH_REQUEST: {1}, Kind.REFRESHED_C0: {1}}


def ciphertexts_to_bytes(context: MheContext, cts: Iterable[fhe.Ciphertext],
                         kind: Kind = Kind.CIPHERTEXTS) -> bytes:
    """A list of ciphertexts, or of decryption / key-switch / flattened refresh shares."""
    cts = list(cts)
    if kind not in _CT_ELEMENTS:
        raise SerializationError(f"{kind.name.lower()} is not a ciphertext kind")
    return _pack(kind, context.params, cts, {"levels": [c.GetLevel() for c in cts]})


def ciphertexts_from_bytes(context: MheContext, data: bytes, kind: Kind = Kind.CIPHERTEXTS,
                           key_tag: str | None = None, count: int | None = None) -> list[fhe.Ciphertext]:
    """Inverse of :func:`ciphertexts_to_bytes`. Checks ring, level (<= depth and as announced),
    number of elements, and ``key_tag`` (default: the context's joint key for ciphertexts and
    decryption/refresh shares; pass the querier's tag for key-switch shares)."""
    if kind not in _CT_ELEMENTS:
        raise SerializationError(f"{kind.name.lower()} is not a ciphertext kind")
    blobs, meta = _split(kind, context.params, data, count)
    levels = meta.get("levels")
    if not isinstance(levels, list) or len(levels) != len(blobs):
        raise SerializationError(f"{kind.name.lower()} has an inconsistent level table")
    if key_tag is None and kind != Kind.KEY_SWITCH_SHARES and context.public_key is not None:
        key_tag = context.key_tag
    what = kind.name.lower()
    out = []
    with _no_crt_precompute():
        parsed = [_parse(fhe.DeserializeCiphertextString, blob, what) for blob in blobs]
    for ct, level in zip(parsed, levels, strict=True):
        _check_ring(ct, context.params, what)
        if ct.GetCryptoContext() != context.cc:
            raise SerializationError(f"{what} was made under another CryptoContext than this one")
        lv = ct.GetLevel()
        if not 0 <= lv <= context.params.depth or lv != level:
            raise SerializationError(f"{what} has an invalid level {lv}")
        if ct.NumberCiphertextElements() not in _CT_ELEMENTS[kind]:
            raise SerializationError(f"{what} has {ct.NumberCiphertextElements()} elements")
        _check_tag(ct, key_tag, what)
        out.append(native(context, ct) if kind == Kind.CIPHERTEXTS else ct)
    return out


def native(context: MheContext, ct: fhe.Ciphertext) -> fhe.Ciphertext:
    """The same ciphertext on ``context``'s own ring parameters.

    A deserialized ciphertext carries its own copy of the ring parameters, and in OpenFHE 1.6 every
    later addition on it, and on whatever is computed from it, runs an order of magnitude slower
    (``bench/deserialized_ops.py`` measures it); every holder that receives the model and the refreshed
    ciphertexts as bytes would pay it on every step. Adding
    an exact zero made in this context (``x - x``, cached per level and scale degree)
    gives a ciphertext with the same value whose operations run at full speed. Needs the joint
    public key (otherwise ``ct`` is returned as it is)."""
    if (context.public_key is None or ct.NumberCiphertextElements() != 2
            or ct.GetKeyTag() != context.key_tag):
        return ct
    cc = context.cc
    key = (ct.GetLevel(), ct.GetNoiseScaleDeg())
    zero = context._native_zeros.get(key)
    if zero is None:
        base = context._native_zeros.get((0, 1))
        if base is None:
            fresh = context.encrypt(np.zeros(1))
            base = context._native_zeros[(0, 1)] = cc.EvalSub(fresh, fresh)
        rebased = cc.EvalAdd(base, ct)  # the zero is brought to ct's level and scale
        zero = context._native_zeros[key] = cc.EvalSub(rebased, rebased)
        return rebased
    return cc.EvalAdd(zero, ct)


# rotation-key shares and the joint evaluation keys ---------------------------------------------------
def rotation_keys_to_bytes(context: MheContext, key_map: fhe.EvalKeyMap, rotations: Iterable[int]) -> bytes:
    """A rotation-key share (or a partial sum of shares) for exactly ``rotations``."""
    return _pack(Kind.ROTATION_KEY_SHARE, context.params, [key_map],
                 {"rotations": sorted(int(r) for r in rotations)})


def rotation_keys_from_bytes(context: MheContext, data: bytes,
                             rotations: Iterable[int] | None = None) -> tuple[fhe.EvalKeyMap, list[int]]:
    """Inverse of :func:`rotation_keys_to_bytes`: ``(key_map, rotations)``; if ``rotations`` is given
    the share must cover exactly that set."""
    what = Kind.ROTATION_KEY_SHARE.name.lower()
    (blob,), meta = _split(Kind.ROTATION_KEY_SHARE, context.params, data, 1)
    rots = meta.get("rotations")
    if not isinstance(rots, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in rots):
        raise SerializationError(f"{what} has an invalid rotation list")
    if rotations is not None and sorted(set(rots)) != sorted(set(int(r) for r in rotations)):
        raise SerializationError(f"{what} covers other rotations than requested")
    return _parse(fhe.DeserializeEvalKeyMapString, blob, what), rots


def eval_keys_to_bytes(context: MheContext) -> bytes:
    """The installed joint relinearization and rotation keys (from OpenFHE's static maps)."""
    tag = context.key_tag
    blobs = [bytes(fhe.SerializeEvalMultKeyString(fhe.BINARY, tag)) if context.has_relin_key else b""]
    blobs.append(bytes(fhe.SerializeEvalAutomorphismKeyString(fhe.BINARY, tag))
                 if context.rotation_indices else b"")
    meta = {"sizes": [len(b) for b in blobs], "rotations": sorted(context.rotation_indices),
            "tag": tag}
    return frame(Kind.EVAL_KEYS, context.params, b"".join(blobs), meta)


def load_eval_keys(context: MheContext, data: bytes) -> None:
    """Install keys from :func:`eval_keys_to_bytes` (once per process) and record them in ``context``."""
    payload, meta = unframe(Kind.EVAL_KEYS, context.params, data)
    sizes, rots, tag = meta.get("sizes"), meta.get("rotations"), meta.get("tag")
    if (not isinstance(sizes, list) or len(sizes) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes)
            or sum(sizes) != len(payload)
            or not isinstance(rots, list) or not all(isinstance(r, int) for r in rots)
            or bool(rots) != (sizes[1] > 0)):
        raise SerializationError("evaluation keys have an inconsistent table")
    if tag != context.key_tag:
        raise SerializationError("evaluation keys are under another key than this context's")
    relin, rot = payload[:sizes[0]], payload[sizes[0]:]
    cc = context.cc
    try:
        if relin and tag not in cc.GetAllEvalMultKeys():  # OpenFHE refuses to replace a relin key
            fhe.DeserializeEvalMultKeyString(relin, fhe.BINARY)
        if rot:
            fhe.DeserializeEvalAutomorphismKeyString(rot, fhe.BINARY)
    except Exception:
        raise SerializationError("evaluation keys: OpenFHE could not parse the payload") from None
    want = set(cc.FindAutomorphismIndices(sorted(rots))) if rots else set()
    if not want <= set(cc.GetExistingEvalAutomorphismKeyIndices(tag)):
        raise SerializationError("evaluation keys lack some announced rotations")
    if relin:
        try:
            found = bool(cc.GetEvalMultKeyVector(tag))
        except Exception:
            found = False
        if not found:
            raise SerializationError("evaluation keys lack the relinearization key")
        context.has_relin_key = True
    context.rotation_indices = context.rotation_indices | context.normalize_rotations(rots)
