"""Joint rotation keys (Lattigo ``keygen_gal``); the lead's share is the CRP.

The lead's ``EvalAutomorphismKeyGen(s_0, ...)`` draws one common ``a`` per automorphism and is the
lead's share; read as :class:`RotationCrp` it is what every other party needs for its share
``MultiEvalAutomorphismKeyGen(s_i, crp, ...)``. All shares of one automorphism have the same ``a``, so
aggregation sums only the ``b`` parts (``MultiAddEvalAutomorphismKeys``): commutative and associative.
A share covers exactly the rotation offsets it names (slot offsets, negative allowed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import MheContext
from rhode.mhe.protocols.base import Crp, ProtocolKind, SecretHolder, payload_size, require_lead
from rhode.mhe.serial import rotation_keys_from_bytes, rotation_keys_to_bytes


def as_rotation_tuple(rotations: Iterable[int]) -> tuple[int, ...]:
    """Rotation offsets as a share names them: sorted, without duplicates."""
    return tuple(sorted({int(r) for r in rotations}))


@dataclass(frozen=True, eq=False)
class RotationShare:
    """A party's rotation-key share for ``rotations``, or a partial sum of such shares."""

    keys: fhe.EvalKeyMap
    rotations: tuple[int, ...]

    def to_bytes(self, context: MheContext) -> bytes:
        """Framed as ``Kind.ROTATION_KEY_SHARE`` with its rotation list."""
        return rotation_keys_to_bytes(context, self.keys, self.rotations)

    @classmethod
    def from_bytes(cls, context: MheContext, data: bytes,
                   rotations: Iterable[int] | None = None) -> RotationShare:
        """Inverse of :meth:`to_bytes`; with ``rotations`` the share must cover exactly that set."""
        keys, rots = rotation_keys_from_bytes(context, data, rotations)
        return cls(keys, as_rotation_tuple(rots))

    def payload_size(self) -> int:
        """Bytes of the OpenFHE payload."""
        return payload_size(self.keys, ProtocolKind.ROTATION)


class RotationCrp(Crp, RotationShare):
    """The lead's share, read as the CRPs every other party's share is made with."""


def drop_automorphism_keys(cc: fhe.CryptoContext, tag: str) -> None:
    """Remove the automorphism keys of one tag from OpenFHE's static map, keeping all others.

    OpenFHE can only clear the whole map, so the other tags' maps are taken out and put back."""
    keep = {t: m for t, m in cc.GetAllEvalAutomorphismKeys().items() if t != tag}
    cc.ClearEvalAutomorphismKeys()
    for t, m in keep.items():
        cc.InsertEvalAutomorphismKey(m, t)


def gen_crp(lead: SecretHolder, rotations: Iterable[int]) -> RotationCrp:
    """The lead's share for ``rotations``, which fixes the CRPs.

    It is made under a throw-away tag and removed from OpenFHE's static key map at once (OpenFHE
    inserts it there), so no partial key stays in memory beside the joint keys."""
    require_lead(lead, "rotation-key CRP")
    rots = as_rotation_tuple(rotations)
    cc = lead.context.cc
    auto = cc.FindAutomorphismIndices(list(rots))

    def make(secret: fhe.PrivateKey) -> fhe.EvalKeyMap:
        own_tag = secret.GetKeyTag()
        tmp_tag = f"rhode-lead-{uuid.uuid4().hex}"
        secret.SetKeyTag(tmp_tag)
        try:
            return cc.EvalAutomorphismKeyGen(secret, auto)
        finally:
            secret.SetKeyTag(own_tag)
            drop_automorphism_keys(cc, tmp_tag)

    return RotationCrp(lead.with_secret(make), rots)


def gen_share(party: SecretHolder, crp: RotationCrp) -> RotationShare:
    """The party's share for the rotations of ``crp``; the lead's share is ``crp`` itself."""
    if party.is_lead:
        return RotationShare(crp.keys, crp.rotations)
    ctx = party.context
    auto = ctx.cc.FindAutomorphismIndices(list(crp.rotations))
    keys = party.with_secret(lambda s: ctx.cc.MultiEvalAutomorphismKeyGen(s, crp.keys, auto, ctx.key_tag))
    return RotationShare(keys, crp.rotations)


def aggregate(context: MheContext, a: RotationShare, b: RotationShare) -> RotationShare:
    """Sum two shares of the same rotations; the inputs are left as they are."""
    if a.rotations != b.rotations:
        raise ProtocolError("rotation-key shares cover different rotations")
    return RotationShare(context.cc.MultiAddEvalAutomorphismKeys(a.keys, b.keys, context.key_tag),
                         a.rotations)


def finalize(context: MheContext, aggregated: RotationShare) -> fhe.EvalKeyMap:
    """Install the joint rotation keys (merged with those already installed) and return them. Keys this
    process already holds under the joint tag (OpenFHE's map is per process: in process, the aggregator
    installed them when it summed the shares) are not inserted again."""
    cc, tag = context.cc, context.key_tag
    installed = tag in cc.GetAllEvalAutomorphismKeys()
    have = set(cc.GetExistingEvalAutomorphismKeyIndices(tag)) if installed else set()
    if not set(cc.FindAutomorphismIndices(list(aggregated.rotations))) <= have:
        cc.InsertEvalAutomorphismKey(aggregated.keys, tag)
    context.rotation_indices = context.rotation_indices | context.normalize_rotations(aggregated.rotations)
    return aggregated.keys
