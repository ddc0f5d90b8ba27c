"""Secret-free steps of the collective protocols: what the aggregator runs.

Every protocol has the Lattigo shape: parties *generate* shares from their secret (methods of
:class:`~rhode.mhe.party.Party`), the aggregator *aggregates* them and *finalizes* the result into a
key or ciphertext (functions here). Nothing in this module touches a secret share. By convention the
share of party 0 (the lead) comes first in every list.

Levels: a refresh takes ciphertexts with at least 3 RNS towers left (``levels_used <= usable_levels``,
counting a pending rescale) and returns them at level 0; decryption and key switching work at any level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import openfhe as fhe

from rhode.errors import ParameterError, ProtocolError
from rhode.mhe.context import Ciphertext, MheContext

MIN_PARTIES = 2
MAX_PARTIES = 16


def check_party_count(n: int) -> int:
    """Validate the number of data holders (2 to 16)."""
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_PARTIES <= n <= MAX_PARTIES:
        raise ParameterError(
            f"the number of parties must be an integer from {MIN_PARTIES} to {MAX_PARTIES}, got {n!r}")
    return n


def _check_shares(shares: Sequence, what: str, n: int | None = None) -> None:
    if len(shares) == 0:
        raise ProtocolError(f"no {what} shares to aggregate")
    if n is not None and len(shares) != n:
        raise ProtocolError(f"expected {n} {what} shares (one per ciphertext), got {len(shares)}")


# -- collective public key ------------------------------------------------------------------------
def aggregate_public_key(context: MheContext, shares: Sequence[fhe.PublicKey]) -> fhe.PublicKey:
    """Sum the public-key shares (lead's first) into the joint public key."""
    _check_shares(shares, "public-key")
    pk = shares[0]
    for s in shares[1:]:
        pk = context.cc.MultiAddPubKeys(pk, s, s.GetKeyTag())
    return pk


def finalize_public_key(context: MheContext, joint: fhe.PublicKey) -> None:
    """Install the joint public key in the context."""
    context.public_key = joint


# -- relinearization key (two rounds) --------------------------------------------------------------
def aggregate_relin_round1(context: MheContext, shares: Sequence[fhe.EvalKey]) -> fhe.EvalKey:
    """Round 1: the shares have one common ``a`` (the lead's), so only their ``b`` parts are summed."""
    _check_shares(shares, "relinearization round-1")
    tag = context.key_tag
    acc = shares[0]
    for s in shares[1:]:
        acc = context.cc.MultiAddEvalKeys(acc, s, tag)
    return acc


def aggregate_relin_round2(context: MheContext, shares: Sequence[fhe.EvalKey]) -> fhe.EvalKey:
    """Round 2: independent ``a`` parts, both components are summed."""
    _check_shares(shares, "relinearization round-2")
    tag = context.key_tag
    acc = shares[0]
    for s in shares[1:]:
        acc = context.cc.MultiAddEvalMultKeys(acc, s, tag)
    return acc


def finalize_relin_key(context: MheContext, key: fhe.EvalKey) -> None:
    """Install the joint relinearization key (once per process, under the joint tag)."""
    context.cc.InsertEvalMultKey([key])
    context.has_relin_key = True


# -- rotation keys -----------------------------------------------------------------------------------
def aggregate_rotation_keys(context: MheContext, shares: Sequence[fhe.EvalKeyMap]) -> fhe.EvalKeyMap:
    """Sum rotation-key shares (the lead's first) into the joint rotation keys."""
    _check_shares(shares, "rotation-key")
    tag = context.key_tag
    acc = shares[0]
    for s in shares[1:]:
        acc = context.cc.MultiAddEvalAutomorphismKeys(acc, s, tag)
    return acc


def finalize_rotation_keys(context: MheContext, joint: fhe.EvalKeyMap,
                           rotations: Sequence[int]) -> None:
    """Install joint rotation keys for ``rotations`` (merged with those already installed)."""
    context.cc.InsertEvalAutomorphismKey(joint, context.key_tag)
    context.rotation_indices = context.rotation_indices | context.normalize_rotations(rotations)


# -- threshold decryption ----------------------------------------------------------------------------
def fuse_decryption(context: MheContext, shares: Sequence[Sequence[Ciphertext]],
                    length: int | None = None) -> list[np.ndarray]:
    """Fuse decryption shares ``shares[party][ciphertext]`` (lead first) into real vectors.

    Returns one float64 array of ``length`` (default: all slots) values per ciphertext. A fusion that
    OpenFHE cannot decode (as with missing shares) raises :class:`ProtocolError`.
    """
    _check_shares(shares, "decryption")
    n_ct = len(shares[0])
    if any(len(s) != n_ct for s in shares):
        raise ProtocolError("every party must send one decryption share per ciphertext")
    length = context.slots if length is None else int(length)
    if not 1 <= length <= context.slots:
        raise ProtocolError(f"length must be between 1 and {context.slots}, got {length}")
    out = []
    for j in range(n_ct):
        try:
            pt = context.cc.MultipartyDecryptFusion([s[j] for s in shares])
            pt.SetLength(length)
            out.append(np.asarray(pt.GetRealPackedValue(), dtype=np.float64))
        except RuntimeError:
            raise ProtocolError(
                "threshold decryption failed to decode (missing or wrong shares, or too much noise)"
            ) from None
    return out


# -- refresh (interactive multiparty bootstrapping) --------------------------------------------------
@dataclass
class RefreshRequest:
    """What the aggregator sends to every party for one refresh round, and keeps to finish it.

    Attributes:
        adjusted: the scale-adjusted input ciphertexts (kept by the aggregator).
        c1s: their ``c1`` parts (sent to the parties).
        crps: one common random polynomial per ciphertext (sent to the parties).
    """

    adjusted: list[Ciphertext]
    c1s: list[Ciphertext]
    crps: list[Ciphertext]


def refresh_prepare(context: MheContext, cts: Sequence[Ciphertext]) -> RefreshRequest:
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


def aggregate_refresh(context: MheContext,
                      shares: Sequence[Sequence[Sequence[Ciphertext]]]) -> list[list[Ciphertext]]:
    """Sum refresh shares ``shares[party][ciphertext] = (h0, h1)`` into one pair per ciphertext.

    The inputs are left untouched (OpenFHE's adder works in place, so the first pair is cloned)."""
    _check_shares(shares, "refresh")
    n_ct = len(shares[0])
    if any(len(s) != n_ct for s in shares):
        raise ProtocolError("every party must send one refresh share per ciphertext")
    out = []
    for j in range(n_ct):
        pairs = [[h.Clone() for h in shares[0][j]]] + [list(s[j]) for s in shares[1:]]
        if any(len(p) != 2 for p in pairs):
            raise ProtocolError("a refresh share must be a pair of ciphertexts")
        out.append(list(context.cc.IntMPBootAdd(pairs)))
    return out


def refresh_finalize(context: MheContext, request: RefreshRequest,
                     aggregated: Sequence[Sequence[Ciphertext]]) -> list[Ciphertext]:
    """Re-encrypt the aggregated shares under the joint key: ciphertexts at level 0."""
    if len(aggregated) != len(request.adjusted):
        raise ProtocolError(
            f"expected {len(request.adjusted)} aggregated refresh shares, got {len(aggregated)}")
    pk = context.require_public_key()
    return [context.cc.IntMPBootEncrypt(pk, list(agg), a, ct)
            for agg, a, ct in zip(aggregated, request.crps, request.adjusted, strict=True)]


# -- public-key switch to a querier ---------------------------------------------------------------------
def aggregate_key_switch(context: MheContext,
                         shares: Sequence[Sequence[Ciphertext]]) -> list[Ciphertext]:
    """Sum key-switch shares ``shares[party][ciphertext]``: ciphertexts under the querier's key."""
    _check_shares(shares, "key-switch")
    n_ct = len(shares[0])
    if any(len(s) != n_ct for s in shares):
        raise ProtocolError("every party must send one key-switch share per ciphertext")
    out = []
    for j in range(n_ct):
        acc = shares[0][j]
        for s in shares[1:]:
            acc = context.cc.EvalAdd(acc, s[j])
        out.append(acc)
    return out
