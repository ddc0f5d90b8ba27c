"""A data holder: one secret share, and the one primitive through which the protocols use it.

The share generation of every collective protocol lives in its module of :mod:`rhode.mhe.protocols`
(``gen_share(party, ...)``), which reaches the secret only through :meth:`Party.with_secret`.
Shares never contain the secret in the clear. The secret itself is never shown in ``repr``, never
pickled, and written to disk only by :meth:`Party.save` (mode 0600).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import openfhe as fhe

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.context import MheContext
from rhode.mhe.protocols import public_key
from rhode.mhe.serial import Kind, frame, unframe

T = TypeVar("T")


class Party:
    """One data holder of an N-out-of-N threshold-CKKS key.

    Attributes:
        index: position of the party (0 is the *lead*: its shares fix the common random polynomials
            of key generation and it contributes ``c0`` to decryption).
        public_key_share: the party's public-key share (public; for the lead also the CRP).
    """

    __slots__ = ("context", "index", "public_key_share", "_secret")

    def __init__(self, context: MheContext, index: int, secret: fhe.PrivateKey,
                 public_key_share: fhe.PublicKey | None = None) -> None:
        if index < 0:
            raise ProtocolError(f"party index must be >= 0, got {index}")
        self.context = context
        self.index = index
        self.public_key_share = public_key_share
        self._secret = secret

    # -- creation -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, context: MheContext, index: int, crp: public_key.PublicKeyCrp | None = None) -> Party:
        """Sample a fresh secret share and its public-key share (:func:`public_key.sample_secret`).

        The lead (``index == 0``) needs no input; every other party needs the lead's public-key share
        read as :class:`~rhode.mhe.protocols.public_key.PublicKeyCrp`, whose uniform part is the
        common random polynomial of the public-key protocol.
        """
        if index != 0 and crp is None:
            raise ProtocolError(f"party {index} needs the lead's public-key share to join")
        secret, share = public_key.sample_secret(context, None if index == 0 else crp)
        return cls(context, index, secret, share.key)

    def __repr__(self) -> str:
        return f"Party(index={self.index}, preset={self.context.params.name!r})"

    def __reduce__(self):
        raise TypeError("a Party holds a secret share and cannot be pickled; use Party.save()")

    @property
    def is_lead(self) -> bool:
        """Whether this party is the lead (index 0)."""
        return self.index == 0

    def with_secret(self, fn: Callable[[fhe.PrivateKey], T]) -> T:
        """Call ``fn(secret)``: the one secret-touching primitive, for the ``gen_share`` steps of
        :mod:`rhode.mhe.protocols` only (``fn`` must return a share, never the secret)."""
        return fn(self._secret)

    # -- persistence --------------------------------------------------------------------------------
    def bind_to_joint_key(self) -> None:
        """Tag the secret share with the joint key tag (after public-key generation)."""
        self._secret.SetKeyTag(self.context.key_tag)

    def secret_bytes(self) -> bytes:
        """The framed secret share (for :meth:`save` and tests of a share computed elsewhere)."""
        payload = fhe.Serialize(self._secret, fhe.BINARY)
        return frame(Kind.SECRET_SHARE, self.context.params, payload,
                     meta={"index": self.index})

    def save(self, path: str | os.PathLike) -> None:
        """Write the secret share to ``path`` with mode 0600 (created or truncated)."""
        path = Path(path)
        data = self.secret_bytes()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, context: MheContext, path: str | os.PathLike) -> Party:
        """Read a secret share written by :meth:`save` for the same parameters."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SerializationError(f"cannot read secret share file {path}: {exc.strerror}") from None
        return cls.from_secret_bytes(context, data)

    @classmethod
    def from_secret_bytes(cls, context: MheContext, data: bytes) -> Party:
        """Inverse of :meth:`secret_bytes` (checks parameters, ring and, if known, the joint key tag)."""
        payload, meta = unframe(Kind.SECRET_SHARE, context.params, data)
        index = meta.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 16:
            raise SerializationError("secret share has no valid party index")
        try:
            secret = fhe.DeserializePrivateKeyString(payload, fhe.BINARY)
            ring = secret.GetCryptoContext().GetRingDimension()
        except Exception:
            raise SerializationError("secret share is corrupted") from None
        if ring != context.params.ring_dim:
            raise SerializationError("secret share belongs to another ring dimension")
        if context.public_key is not None and secret.GetKeyTag() != context.key_tag:
            raise SerializationError("secret share belongs to another joint key")
        return cls(context, index, secret)

