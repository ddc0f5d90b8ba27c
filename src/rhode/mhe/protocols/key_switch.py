"""Public-key switch to a querier (Lattigo ``keyswitch_pk``, PCKS emulated on OpenFHE).

Each party sends, per ciphertext, its flooded decryption share (:mod:`.decryption`; the lead's
carries ``c0``) plus a fresh encryption of zero under the querier's public key; the sum over all
parties is a ciphertext of the message under the querier's key, which only the querier can decrypt
(:class:`rhode.mhe.querier.Querier`). Shares are two-element ciphertexts under the querier's tag at
the level of the input; aggregation is ``EvalAdd`` (commutative, associative) and the aggregate is
the result. Never proxy re-encryption: a re-encryption key would give the querier ``s_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import openfhe as fhe

from rhode.mhe.codec import Kind, ciphertexts_from_bytes, ciphertexts_to_bytes
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols import decryption
from rhode.mhe.protocols.base import ProtocolKind, SecretHolder, payload_size


@dataclass(frozen=True, eq=False)
class KeySwitchShare:
    """One party's key-switch shares of a batch (one per ciphertext), or a partial sum of several
    parties' shares of the same batch."""

    cts: tuple[Ciphertext, ...]

    def to_bytes(self, context: MheContext) -> bytes:
        """Framed as ``Kind.KEY_SWITCH_SHARES``."""
        return ciphertexts_to_bytes(context, self.cts, Kind.KEY_SWITCH_SHARES)

    @classmethod
    def from_bytes(cls, context: MheContext, data: bytes, key_tag: str | None = None,
                   count: int | None = None) -> KeySwitchShare:
        """Inverse of :meth:`to_bytes`; pass the querier's key tag as ``key_tag`` to check it."""
        return cls(tuple(ciphertexts_from_bytes(context, data, Kind.KEY_SWITCH_SHARES,
                                                key_tag=key_tag, count=count)))

    def payload_size(self) -> int:
        """Bytes of the OpenFHE payload."""
        return payload_size(list(self.cts), ProtocolKind.KEY_SWITCH)


def gen_share(party: SecretHolder, cts: Sequence[Ciphertext],
              querier_public_key: fhe.PublicKey) -> KeySwitchShare:
    """The party's shares of ``cts`` (any level) towards ``querier_public_key`` (always flooded)."""
    cc = party.context.cc
    qtag = querier_public_key.GetKeyTag()
    cts = list(cts)
    out = []
    for ct, d in zip(cts, decryption.gen_share(party, cts).cts, strict=True):
        zero = cc.MakeCKKSPackedPlaintext([0.0], ct.GetNoiseScaleDeg(), ct.GetLevel())
        z = cc.Encrypt(querier_public_key, zero)
        d.SetKeyTag(qtag)
        out.append(cc.EvalAdd(z, d))
    return KeySwitchShare(tuple(out))


def aggregate(context: MheContext, a: KeySwitchShare, b: KeySwitchShare) -> KeySwitchShare:
    """Sum two shares (or partial sums) of the same batch; the inputs are left as they are."""
    return KeySwitchShare(decryption.add_ciphertexts(context, a.cts, b.cts, ProtocolKind.KEY_SWITCH))


def finalize(context: MheContext, aggregated: KeySwitchShare) -> list[Ciphertext]:
    """The sum of every party's shares: the ciphertexts under the querier's key."""
    return list(aggregated.cts)
