"""Sealed delivery of key pieces between two data holders through the aggregator.

Each data holder makes an X25519 key pair per key epoch (``query.setup``) and publishes the public
half. A piece for holder ``j`` is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
X25519 shared secret of the sender and ``j`` and bound to the joint key, sender and recipient (the
associated data), so the aggregator that carries it sees only ciphertext, and a piece replayed to
another holder or key does not open. All primitives from :mod:`cryptography`.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rhode.errors import SerializationError

_INFO = b"rhode key piece v1"
_NONCE = 12


def new_private_key() -> bytes:
    """A fresh X25519 private key (32 raw bytes; secret: stored 0600 like the secret share)."""
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def public_key(private: bytes) -> bytes:
    """The 32-byte public key of ``private``."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _aead(private: bytes, peer: bytes, binding: bytes) -> AESGCM:
    try:
        mine = X25519PrivateKey.from_private_bytes(private)
        shared = mine.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        raise SerializationError("a data holder's sealing key is malformed (32 raw bytes expected)") from None
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=_INFO + binding).derive(shared))


def binding(key_tag: str, sender: int, recipient: int) -> bytes:
    """What a sealed piece is bound to: the joint key, its sender and its recipient."""
    return f"{key_tag}|{sender}|{recipient}".encode()


def seal(private: bytes, peer: bytes, plaintext: bytes, bound: bytes) -> bytes:
    """``plaintext`` sealed for the holder of ``peer`` (nonce | AES-GCM ciphertext and tag)."""
    nonce = os.urandom(_NONCE)
    return nonce + _aead(private, peer, bound).encrypt(nonce, plaintext, bound)


def open_sealed(private: bytes, peer: bytes, sealed: bytes, bound: bytes) -> bytes:
    """Inverse of :func:`seal` (a :class:`SerializationError` if it was altered or is not for us)."""
    if len(sealed) <= _NONCE + 16:
        raise SerializationError("a sealed key piece is truncated")
    try:
        return _aead(private, peer, bound).decrypt(sealed[:_NONCE], sealed[_NONCE:], bound)
    except InvalidTag:
        raise SerializationError("a sealed key piece does not open: altered, or not for this holder "
                                 "and key") from None
