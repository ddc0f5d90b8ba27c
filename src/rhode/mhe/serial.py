"""Former name of the serialization layer, kept as aliases until every caller has switched.

The framing and typed codecs now live in :mod:`rhode.mhe.codec` (re-exported here unchanged); the
refresh codecs below delegate to the share types of :mod:`rhode.mhe.protocols.refresh`. New code
calls ``share.to_bytes(context)`` / ``ShareType.from_bytes(context, data)`` of the protocol modules.
(The split breaks what would otherwise be an import cycle: the share types build on the codecs, and
these aliases on the share types.)
"""

from __future__ import annotations

from collections.abc import Sequence

from rhode.mhe.codec import (
    MAGIC,
    MAX_META,
    MAX_OBJECTS,
    VERSION,
    Kind,
    _no_crt_precompute,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    context_from_bytes,
    context_to_bytes,
    eval_key_from_bytes,
    eval_key_to_bytes,
    eval_keys_to_bytes,
    frame,
    header_params_hash,
    load_eval_keys,
    native,
    params_hash,
    peek_kind,
    public_key_from_bytes,
    public_key_to_bytes,
    rotation_keys_from_bytes,
    rotation_keys_to_bytes,
    unframe,
)
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols.refresh import RefreshRequest, RefreshShare

__all__ = [
    "MAGIC",
    "MAX_META",
    "MAX_OBJECTS",
    "VERSION",
    "Kind",
    "_no_crt_precompute",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "context_from_bytes",
    "context_to_bytes",
    "eval_key_from_bytes",
    "eval_key_to_bytes",
    "eval_keys_to_bytes",
    "frame",
    "header_params_hash",
    "load_eval_keys",
    "native",
    "params_hash",
    "peek_kind",
    "public_key_from_bytes",
    "public_key_to_bytes",
    "refresh_request_from_bytes",
    "refresh_request_to_bytes",
    "refresh_shares_from_bytes",
    "refresh_shares_to_bytes",
    "rotation_keys_from_bytes",
    "rotation_keys_to_bytes",
    "unframe",
]


def refresh_request_to_bytes(context: MheContext, request: RefreshRequest) -> bytes:
    """Alias of :meth:`RefreshRequest.to_bytes`: the ``c1`` parts and the CRPs."""
    return RefreshRequest.to_bytes(request, context)


def refresh_request_from_bytes(context: MheContext, data: bytes) -> tuple[list[Ciphertext], list[Ciphertext]]:
    """Alias of :meth:`RefreshRequest.from_bytes`, as ``(c1s, crps)``."""
    req = RefreshRequest.from_bytes(context, data)
    return req.c1s, req.crps


def refresh_shares_to_bytes(context: MheContext, pairs: Sequence[Sequence[Ciphertext]]) -> bytes:
    """Alias of :meth:`RefreshShare.to_bytes` for one party's pairs."""
    return RefreshShare(tuple(tuple(p) for p in pairs)).to_bytes(context)


def refresh_shares_from_bytes(context: MheContext, data: bytes,
                              count: int | None = None) -> list[list[Ciphertext]]:
    """Alias of :meth:`RefreshShare.from_bytes`, as a list of ``[h0, h1]``."""
    return [list(p) for p in RefreshShare.from_bytes(context, data, count).pairs]
