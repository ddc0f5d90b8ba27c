"""Collective public key (Lattigo ``keygen_cpk``): one round; the lead's share is the CRP.

OpenFHE has no separate common reference string: the lead's ``KeyGen`` draws the uniform polynomial
``a``, and its public-key share ``(b_0 = -a s_0 + e_0, a)`` carries it. Every other party samples its
secret ``s_i`` and share ``(b_i = -a s_i + e_i, a)`` from that CRP (:class:`PublicKeyCrp`, the lead's
share). Aggregation sums the ``b`` parts and keeps the common ``a``: commutative and associative, the
lead's share is one share among the others. The joint key is tagged with the smallest tag of its
shares (the same in any order of aggregation).
"""

from __future__ import annotations

import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import MheContext
from rhode.mhe.protocols.base import Crp, KeyShare, ProtocolKind, SecretHolder
from rhode.mhe.serial import Kind


class PublicKeyShare(KeyShare[fhe.PublicKey]):
    """One party's public-key share ``(b_i, a)``, or a partial sum of shares."""

    KIND = Kind.PUBLIC_KEY_SHARE
    PROTOCOL = ProtocolKind.PUBLIC_KEY


class PublicKeyCrp(Crp, PublicKeyShare):
    """The lead's public-key share, read as the CRP ``a`` every other party's share is made with."""


def sample_secret(context: MheContext, crp: PublicKeyCrp | None) -> tuple[fhe.PrivateKey, PublicKeyShare]:
    """A fresh secret share and its public-key share.

    The lead passes no CRP (its ``KeyGen`` draws it); every other party passes the lead's
    :class:`PublicKeyCrp`. Used by :meth:`rhode.mhe.party.Party.create`."""
    cc = context.cc
    kp = cc.KeyGen() if crp is None else cc.MultipartyKeyGen(crp.key, False, True)
    return kp.secretKey, PublicKeyShare(kp.publicKey)


def gen_share(party: SecretHolder) -> PublicKeyShare:
    """The party's public-key share (made with its secret by :func:`sample_secret`)."""
    pk = party.public_key_share
    if pk is None:
        raise ProtocolError(f"party {party.index} has no public-key share (only a freshly created party has)")
    return PublicKeyShare(pk)


def aggregate(context: MheContext, a: PublicKeyShare, b: PublicKeyShare) -> PublicKeyShare:
    """Sum two shares (``b`` parts added, common ``a`` kept); the inputs are left as they are.

    OpenFHE takes ``a`` (and the tag given) from the first operand; the operands are put in tag
    order, so the result is the same object in any order of aggregation, down to its byte form
    (which depends on where its ring parameters came from: the context, or bytes)."""
    if b.key.GetKeyTag() < a.key.GetKeyTag():
        a, b = b, a
    return PublicKeyShare(context.cc.MultiAddPubKeys(a.key, b.key, a.key.GetKeyTag()))


def finalize(context: MheContext, aggregated: PublicKeyShare) -> fhe.PublicKey:
    """Install the sum of every party's share as the joint public key and return it."""
    context.public_key = aggregated.key
    return aggregated.key
