"""A data holder: one secret share, and the one primitive through which the protocols use it.

The share generation of every collective protocol lives in its module of :mod:`rhode.mhe.protocols`
(``gen_share(party, ...)``), which reaches the secret only through :meth:`Party.with_secret`. The
former share methods (``relin_share_round1``, ``decryption_share``, ...) remain as aliases of those
functions on raw OpenFHE objects. Shares never contain the secret in the clear. The secret itself
is never shown in ``repr``, never pickled, and written to disk only by :meth:`Party.save` (mode 0600).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import openfhe as fhe

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.codec import Kind, frame, unframe
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation

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
    def create(cls, context: MheContext, index: int,
               lead_public_key_share: fhe.PublicKey | public_key.PublicKeyCrp | None = None) -> Party:
        """Sample a fresh secret share and its public-key share (:func:`public_key.sample_secret`).

        The lead (``index == 0``) needs no input; every other party needs the lead's public-key share
        (raw, or as :class:`~rhode.mhe.protocols.public_key.PublicKeyCrp`), whose uniform part is the
        common random polynomial of the public-key protocol.
        """
        if index == 0:
            crp = None
        elif lead_public_key_share is None:
            raise ProtocolError(f"party {index} needs the lead's public-key share to join")
        elif isinstance(lead_public_key_share, public_key.PublicKeyCrp):
            crp = lead_public_key_share
        else:
            crp = public_key.PublicKeyCrp(lead_public_key_share)
        secret, share = public_key.sample_secret(context, crp)
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

    # -- former share methods: aliases of the protocol modules' gen_share, on raw OpenFHE objects ----
    def relin_share_round1(self, lead_round1_share: fhe.EvalKey | None = None) -> fhe.EvalKey:
        """Alias: the lead's :func:`relin.gen_crp`, the others' :func:`relin.gen_round1`."""
        if self.is_lead:
            return relin.gen_crp(self).key
        crp = None if lead_round1_share is None else relin.RelinCrp(lead_round1_share)
        return relin.gen_round1(self, crp).key

    def relin_share_round2(self, round1_key: fhe.EvalKey) -> fhe.EvalKey:
        """Alias of :func:`relin.gen_round2`."""
        return relin.gen_round2(self, relin.RelinRound1Share(round1_key)).key

    def rotation_key_share(self, rotations: Iterable[int],
                           lead_share: fhe.EvalKeyMap | None = None) -> fhe.EvalKeyMap:
        """Alias: the lead's :func:`rotation.gen_crp`, the others' :func:`rotation.gen_share`."""
        if self.is_lead:
            return rotation.gen_crp(self, rotations).keys
        if lead_share is None:
            raise ProtocolError(f"party {self.index} needs the lead's rotation-key share")
        crp = rotation.RotationCrp(lead_share, rotation.as_rotation_tuple(rotations))
        return rotation.gen_share(self, crp).keys

    def decryption_share(self, cts: Sequence[Ciphertext], flood: bool = True) -> list[Ciphertext]:
        """Alias of :func:`decryption.gen_share` (flooded unless ``flood=False``)."""
        return list(decryption.gen_share(self, cts, flood).cts)

    def refresh_share(self, c1s: Sequence[Ciphertext],
                      crps: Sequence[Ciphertext]) -> list[list[Ciphertext]]:
        """Alias of :func:`refresh.gen_share`: a pair ``[h0, h1]`` per ciphertext."""
        share = refresh.gen_share(self, refresh.RefreshRequest([], list(c1s), list(crps)))
        return [list(pair) for pair in share.pairs]

    def key_switch_share(self, cts: Sequence[Ciphertext],
                         querier_public_key: fhe.PublicKey) -> list[Ciphertext]:
        """Alias of :func:`key_switch.gen_share`."""
        return list(key_switch.gen_share(self, cts, querier_public_key).cts)

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

