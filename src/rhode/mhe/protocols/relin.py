"""Relinearization key, two rounds (Lattigo ``keygen_relin``, OpenFHE's two-round multiparty
``EvalMultKey``); the lead's round-1 share is the CRP.

Round 1: the lead's ``KeySwitchGen(s_0, s_0)`` draws the common ``a`` and is the lead's round-1 share;
read as :class:`RelinCrp` it is what every other party needs for its own round-1 share
``MultiKeySwitchGen(s_i, s_i, crp)``. All round-1 shares have the same ``a``, so aggregation sums
only their ``b`` parts (``MultiAddEvalKeys``). Round 2: every party (the lead included) multiplies the
aggregated round-1 key by its secret (``MultiMultEvalKey``); these shares have independent ``a``
parts and both components are summed (``MultiAddEvalMultKeys``). Using the wrong adder gives garbage.
Both aggregations are commutative and associative. The key works at every level.
"""

from __future__ import annotations

import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import MheContext
from rhode.mhe.protocols.base import Crp, KeyShare, ProtocolKind, SecretHolder, require_lead
from rhode.mhe.serial import Kind


class RelinRound1Share(KeyShare[fhe.EvalKey]):
    """A party's round-1 share, a partial sum of them, or the aggregated round-1 key (which the
    aggregator sends back to every party for round 2)."""

    KIND = Kind.RELIN_SHARE_ROUND1
    PROTOCOL = ProtocolKind.RELIN_ROUND1


class RelinCrp(Crp, RelinRound1Share):
    """The lead's round-1 share, read as the CRP of round 1."""


class RelinRound2Share(KeyShare[fhe.EvalKey]):
    """A party's round-2 share or a partial sum of them."""

    KIND = Kind.RELIN_SHARE_ROUND2
    PROTOCOL = ProtocolKind.RELIN_ROUND2


def gen_crp(lead: SecretHolder) -> RelinCrp:
    """The lead's round-1 share ``KeySwitchGen(s_0, s_0)``, which fixes the common ``a``."""
    require_lead(lead, "relinearization CRP")
    cc = lead.context.cc
    return RelinCrp(lead.with_secret(lambda s: cc.KeySwitchGen(s, s)))


def gen_round1(party: SecretHolder, crp: RelinCrp | None) -> RelinRound1Share:
    """Round-1 share. The lead's is its CRP (pass it, or ``None`` to make it here); every other party
    needs the lead's CRP."""
    if party.is_lead:
        return RelinRound1Share((crp if crp is not None else gen_crp(party)).key)
    if crp is None:
        raise ProtocolError(f"party {party.index} needs the lead's round-1 share")
    cc = party.context.cc
    return RelinRound1Share(party.with_secret(lambda s: cc.MultiKeySwitchGen(s, s, crp.key)))


def aggregate_round1(context: MheContext, a: RelinRound1Share, b: RelinRound1Share) -> RelinRound1Share:
    """Sum the ``b`` parts of two round-1 shares (same ``a``); the inputs are left as they are."""
    return RelinRound1Share(context.cc.MultiAddEvalKeys(a.key, b.key, context.key_tag))


def gen_round2(party: SecretHolder, round1: RelinRound1Share) -> RelinRound2Share:
    """Round-2 share from the aggregated round-1 key (every party, the lead included)."""
    ctx = party.context
    return RelinRound2Share(party.with_secret(lambda s: ctx.cc.MultiMultEvalKey(s, round1.key, ctx.key_tag)))


def aggregate_round2(context: MheContext, a: RelinRound2Share, b: RelinRound2Share) -> RelinRound2Share:
    """Sum both components of two round-2 shares; the inputs are left as they are."""
    return RelinRound2Share(context.cc.MultiAddEvalMultKeys(a.key, b.key, context.key_tag))


def finalize(context: MheContext, round2: RelinRound2Share) -> fhe.EvalKey:
    """Install the aggregated round-2 shares as the joint relinearization key (once per process,
    under the joint tag) and return it."""
    context.cc.InsertEvalMultKey([round2.key])
    context.has_relin_key = True
    return round2.key
