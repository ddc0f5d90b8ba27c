"""A data holder's side of the collective protocols: one secret share, one method per share kind.

Each method takes only public inputs (common random polynomials, aggregated keys, ciphertexts) plus
the party's own secret share and returns a *share* that the party sends to the aggregator. Shares
never contain the secret in the clear. The secret itself is never shown in ``repr``, never pickled,
and written to disk only by :meth:`Party.save` (mode 0600).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import openfhe as fhe

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.flooding import flood_share


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
               lead_public_key_share: fhe.PublicKey | None = None) -> Party:
        """Sample a fresh secret share and its public-key share.

        The lead (``index == 0``) needs no input; every other party needs the lead's public-key share,
        whose uniform part is the common random polynomial of the public-key protocol.
        """
        cc = context.cc
        if index == 0:
            kp = cc.KeyGen()
        else:
            if lead_public_key_share is None:
                raise ProtocolError(f"party {index} needs the lead's public-key share to join")
            kp = cc.MultipartyKeyGen(lead_public_key_share, False, True)
        return cls(context, index, kp.secretKey, kp.publicKey)

    def __repr__(self) -> str:
        return f"Party(index={self.index}, preset={self.context.params.name!r})"

    def __reduce__(self):
        raise TypeError("a Party holds a secret share and cannot be pickled; use Party.save()")

    @property
    def is_lead(self) -> bool:
        """Whether this party is the lead (index 0)."""
        return self.index == 0

    # -- key generation shares ----------------------------------------------------------------------
    def relin_share_round1(self, lead_round1_share: fhe.EvalKey | None = None) -> fhe.EvalKey:
        """Round 1 of relinearization-key generation. The lead's share fixes the CRP; every other
        party passes the lead's share in."""
        if self.is_lead:
            return self.context.cc.KeySwitchGen(self._secret, self._secret)
        if lead_round1_share is None:
            raise ProtocolError(f"party {self.index} needs the lead's round-1 share")
        return self.context.cc.MultiKeySwitchGen(self._secret, self._secret, lead_round1_share)

    def relin_share_round2(self, round1_key: fhe.EvalKey) -> fhe.EvalKey:
        """Round 2 of relinearization-key generation, from the aggregated round-1 key."""
        return self.context.cc.MultiMultEvalKey(self._secret, round1_key, self.context.key_tag)

    def rotation_key_share(self, rotations: Iterable[int],
                           lead_share: fhe.EvalKeyMap | None = None) -> fhe.EvalKeyMap:
        """Share of the joint rotation keys for exactly ``rotations`` (slot offsets, negative allowed).

        The lead's share fixes the CRPs; the others pass the lead's share in. The lead's share is made
        under a throw-away tag and removed from OpenFHE's static key map at once, so no partial key
        stays in memory beside the joint keys.
        """
        cc = self.context.cc
        auto = cc.FindAutomorphismIndices(sorted(rotations))
        if not self.is_lead:
            if lead_share is None:
                raise ProtocolError(f"party {self.index} needs the lead's rotation-key share")
            return cc.MultiEvalAutomorphismKeyGen(self._secret, lead_share, auto, self.context.key_tag)
        own_tag = self._secret.GetKeyTag()
        tmp_tag = f"rhode-lead-{uuid.uuid4().hex}"
        self._secret.SetKeyTag(tmp_tag)
        try:
            share = cc.EvalAutomorphismKeyGen(self._secret, auto)
        finally:
            self._secret.SetKeyTag(own_tag)
            drop_automorphism_keys(cc, tmp_tag)
        return share

    # -- shares on ciphertexts ----------------------------------------------------------------------
    def decryption_share(self, cts: Sequence[Ciphertext], flood: bool = True) -> list[Ciphertext]:
        """Threshold-decryption shares, one per ciphertext (the lead's carries ``c0``).

        With ``flood`` (the default) each share carries noise flooding (:mod:`rhode.mhe.flooding`), as
        every share that leaves its owner must; ``flood=False`` is for shares that stay in-process."""
        cc = self.context.cc
        cts = list(cts)
        fn = cc.MultipartyDecryptLead if self.is_lead else cc.MultipartyDecryptMain
        shares = list(fn(cts, self._secret))
        if flood:
            shares = [flood_share(self.context, d, ct) for d, ct in zip(shares, cts, strict=True)]
        return shares

    def refresh_share(self, c1s: Sequence[Ciphertext],
                      crps: Sequence[Ciphertext]) -> list[list[Ciphertext]]:
        """Refresh (interactive bootstrapping) shares: for each ciphertext, the pair (masked
        decryption, re-encryption share) of ``IntMPBootDecrypt``. Masked by uniform randomness."""
        if len(c1s) != len(crps):
            raise ProtocolError(f"refresh needs one CRP per ciphertext, got {len(c1s)} and {len(crps)}")
        cc = self.context.cc
        return [list(cc.IntMPBootDecrypt(self._secret, c1, a)) for c1, a in zip(c1s, crps, strict=True)]

    def key_switch_share(self, cts: Sequence[Ciphertext],
                         querier_public_key: fhe.PublicKey) -> list[Ciphertext]:
        """Public-key-switch shares towards a querier: the (flooded) decryption share plus a fresh
        encryption of zero under the querier's key (the sum over all parties encrypts the message
        under it). Never proxy re-encryption: a re-encryption key would give the querier ``s_i``."""
        cc = self.context.cc
        qtag = querier_public_key.GetKeyTag()
        out = []
        for ct, d in zip(cts, self.decryption_share(cts), strict=True):
            zero = cc.MakeCKKSPackedPlaintext([0.0], ct.GetNoiseScaleDeg(), ct.GetLevel())
            z = cc.Encrypt(querier_public_key, zero)
            d.SetKeyTag(qtag)
            out.append(cc.EvalAdd(z, d))
        return out

    # -- persistence --------------------------------------------------------------------------------
    def bind_to_joint_key(self) -> None:
        """Tag the secret share with the joint key tag (after public-key generation)."""
        self._secret.SetKeyTag(self.context.key_tag)

    def secret_bytes(self) -> bytes:
        """The framed secret share (for :meth:`save` and tests of a share computed elsewhere)."""
        from rhode.mhe.serial import Kind, frame
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
        from rhode.mhe.serial import Kind, unframe
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


def drop_automorphism_keys(cc: fhe.CryptoContext, tag: str) -> None:
    """Remove the automorphism keys of one tag from OpenFHE's static map, keeping all others.

    OpenFHE can only clear the whole map, so the other tags' maps are taken out and put back."""
    keep = {t: m for t, m in cc.GetAllEvalAutomorphismKeys().items() if t != tag}
    cc.ClearEvalAutomorphismKeys()
    for t, m in keep.items():
        cc.InsertEvalAutomorphismKey(m, t)
