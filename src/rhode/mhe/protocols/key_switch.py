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

import openfhe as fhe

from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols import decryption
from rhode.mhe.protocols.base import CiphertextShare, ProtocolKind, SecretHolder
from rhode.mhe.serial import Kind


class KeySwitchShare(CiphertextShare):
    """One party's key-switch shares of a batch (one two-element ciphertext per ciphertext, under
    the querier's key tag: pass it to :meth:`from_bytes` as ``key_tag`` to check it), or a partial
    sum of several parties' shares of the same batch."""

    KIND = Kind.KEY_SWITCH_SHARES
    PROTOCOL = ProtocolKind.KEY_SWITCH


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
