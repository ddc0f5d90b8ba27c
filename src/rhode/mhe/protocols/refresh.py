"""Refresh: interactive multiparty bootstrapping (Lattigo ``mpckks/refresh``, OpenFHE's ``IntMPBoot*``).

The aggregator prepares a :class:`RefreshRequest` (scale-adjusted ciphertexts, which it keeps, their
``c1`` parts and one public common random polynomial each, which it sends); every party answers with
a pair ``(h0_i, h1_i)`` per ciphertext (``IntMPBootDecrypt``: a masked decryption share and a
re-encryption share, masked by uniform randomness, no flooding needed); the pairs are summed
(``IntMPBootAdd``, which adds into its first pair in place: :func:`aggregate` adds into a clone) and
re-encrypted under the joint public key (``IntMPBootEncrypt``).

The refreshed ciphertext is ``(c0, a)``: its ``c1`` is the request's CRP, which every party already
received, so a party that gets a refreshed ciphertext back needs only ``c0`` (:func:`strip`,
:func:`rejoin`): half the bytes.

Levels: a ciphertext needs at least 3 RNS towers left (``levels_used <= usable_levels``, counting a
pending rescale); the refreshed ciphertext is at level 0. The sums are commutative and associative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols.base import ProtocolKind, SecretHolder, check_same_count, payload_size
from rhode.mhe.serial import Kind, ciphertexts_from_bytes, ciphertexts_to_bytes

Pair = tuple[Ciphertext, Ciphertext]


@dataclass
class RefreshRequest:
    """What the aggregator sends to every party for one refresh round, and keeps to finish it.

    Attributes:
        adjusted: the scale-adjusted input ciphertexts (kept by the aggregator, never sent: empty in
            a request read from bytes).
        c1s: their ``c1`` parts (one-element ciphertexts, sent to the parties).
        crps: one common random polynomial per ciphertext (sent to the parties).
    """

    adjusted: list[Ciphertext]
    c1s: list[Ciphertext]
    crps: list[Ciphertext]

    def to_bytes(self, context: MheContext) -> bytes:
        """The part every party needs (``c1s`` then ``crps``), framed as ``Kind.REFRESH_REQUEST``."""
        return ciphertexts_to_bytes(context, list(self.c1s) + list(self.crps), Kind.REFRESH_REQUEST)

    @classmethod
    def from_bytes(cls, context: MheContext, data: bytes) -> RefreshRequest:
        """Inverse of :meth:`to_bytes` (a party's view: ``adjusted`` is empty)."""
        cts = ciphertexts_from_bytes(context, data, Kind.REFRESH_REQUEST)
        if len(cts) % 2:
            raise SerializationError("refresh request must hold as many CRPs as ciphertexts")
        n = len(cts) // 2
        return cls([], cts[:n], cts[n:])


@dataclass(frozen=True, eq=False)
class RefreshShare:
    """One party's refresh shares, a pair ``(h0, h1)`` of compressed one-element ciphertexts per
    ciphertext of the request, or a partial sum of several parties' shares."""

    pairs: tuple[Pair, ...]

    def to_bytes(self, context: MheContext) -> bytes:
        """Framed as ``Kind.REFRESH_SHARES`` (the pairs flattened)."""
        return ciphertexts_to_bytes(context, [h for pair in self.pairs for h in pair], Kind.REFRESH_SHARES)

    @classmethod
    def from_bytes(cls, context: MheContext, data: bytes, count: int | None = None) -> RefreshShare:
        """Inverse of :meth:`to_bytes`; ``count`` pairs expected (if given)."""
        cts = ciphertexts_from_bytes(context, data, Kind.REFRESH_SHARES,
                                     count=None if count is None else 2 * count)
        if len(cts) % 2:
            raise SerializationError("refresh shares must come in pairs")
        return cls(tuple((cts[i], cts[i + 1]) for i in range(0, len(cts), 2)))

    def payload_size(self) -> int:
        """Bytes of the OpenFHE payload."""
        return payload_size([list(p) for p in self.pairs], ProtocolKind.REFRESH)


def prepare(context: MheContext, cts: Sequence[Ciphertext]) -> RefreshRequest:
    """Adjust the scale of each ciphertext and draw its CRP. Needs >= 3 towers left per ciphertext."""
    cc = context.cc
    pk = context.require_public_key()
    adjusted, c1s, crps = [], [], []
    for i, ct in enumerate(cts):
        if context.towers(ct) < 3:
            raise ProtocolError(
                f"ciphertext {i} has used {context.levels_used(ct)} levels ({context.towers(ct)} RNS "
                f"towers left); refresh needs 3, i.e. at most {context.params.usable_levels} levels used")
        a = cc.IntMPBootAdjustScale(ct)
        c1 = a.Clone()
        c1.RemoveElement(0)
        adjusted.append(a)
        c1s.append(c1)
        crps.append(cc.IntMPBootRandomElementGen(pk))
    return RefreshRequest(adjusted, c1s, crps)


def gen_share(party: SecretHolder, request: RefreshRequest) -> RefreshShare:
    """The party's pair for each ciphertext of ``request`` (only ``c1s`` and ``crps`` are read)."""
    if len(request.c1s) != len(request.crps):
        raise ProtocolError(
            f"refresh needs one CRP per ciphertext, got {len(request.c1s)} and {len(request.crps)}")
    cc = party.context.cc
    pairs = party.with_secret(lambda s: [tuple(cc.IntMPBootDecrypt(s, c1, a))
                                         for c1, a in zip(request.c1s, request.crps, strict=True)])
    return RefreshShare(tuple(pairs))


def aggregate(context: MheContext, a: RefreshShare, b: RefreshShare) -> RefreshShare:
    """Sum two shares (or partial sums) pair by pair; the inputs are left as they are."""
    check_same_count(len(a.pairs), len(b.pairs), ProtocolKind.REFRESH)
    out = []
    for pa, pb in zip(a.pairs, b.pairs, strict=True):
        if len(pa) != 2 or len(pb) != 2:
            raise ProtocolError("a refresh share must be a pair of ciphertexts")
        out.append(tuple(context.cc.IntMPBootAdd([[h.Clone() for h in pa], list(pb)])))
    return RefreshShare(tuple(out))


def finalize(context: MheContext, request: RefreshRequest, aggregated: RefreshShare) -> list[Ciphertext]:
    """Re-encrypt the summed pairs under the joint key: the refreshed ciphertexts, at level 0."""
    if len(aggregated.pairs) != len(request.adjusted):
        raise ProtocolError(
            f"expected {len(request.adjusted)} aggregated refresh shares, got {len(aggregated.pairs)}")
    pk = context.require_public_key()
    return [context.cc.IntMPBootEncrypt(pk, list(agg), crp, ct)
            for agg, crp, ct in zip(aggregated.pairs, request.crps, request.adjusted, strict=True)]


def strip(cts: Sequence[Ciphertext]) -> list[Ciphertext]:
    """The ``c0`` part of each refreshed ciphertext (one-element ciphertexts, same level and scale): the
    ``c1`` part is the CRP of its request, which every party has (:func:`rejoin`)."""
    out = []
    for ct in cts:
        if ct.NumberCiphertextElements() != 2:
            raise ProtocolError(f"a refreshed ciphertext has 2 elements, got {ct.NumberCiphertextElements()}")
        c0 = ct.Clone()
        c0.RemoveElement(1)
        out.append(c0)
    return out


def rejoin(c0s: Sequence[Ciphertext], crps: Sequence[Ciphertext]) -> list[Ciphertext]:
    """Inverse of :func:`strip`: ``(c0, a)`` with ``a`` the CRP the party received for that ciphertext."""
    if len(c0s) != len(crps):
        raise ProtocolError(f"{len(c0s)} refreshed ciphertexts for the {len(crps)} CRPs of their request")
    out = []
    for c0, crp in zip(c0s, crps, strict=True):
        if c0.NumberCiphertextElements() != 1 or crp.NumberCiphertextElements() != 1:
            raise ProtocolError("rejoin needs the c0 part of a refreshed ciphertext and its request's CRP")
        ct = c0.Clone()
        ct.SetElements([c0.GetElements()[0], crp.GetElements()[0]])
        out.append(ct)
    return out
