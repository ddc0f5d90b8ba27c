"""The former list-based aggregator API of ``rhode.mhe.protocols`` (one module before), kept as thin
delegations to the per-protocol modules until every caller has switched; then this module goes.

Every function takes and returns raw OpenFHE objects, as before: ``shares[party]`` (keys) or
``shares[party][ciphertext]`` (per-ciphertext shares). The list order no longer matters (the
aggregations are commutative and associative); only the lead's share must be among them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation
from rhode.mhe.protocols.base import ProtocolKind, fold
from rhode.mhe.protocols.refresh import RefreshRequest


def _per_ciphertext(shares: Sequence[Sequence], what: ProtocolKind) -> None:
    if len(shares) == 0:
        raise ProtocolError(f"no {what.value} shares to aggregate")
    if any(len(s) != len(shares[0]) for s in shares):
        raise ProtocolError(f"every party must send one {what.value} share per ciphertext")


def aggregate_public_key(context: MheContext, shares: Sequence[fhe.PublicKey]) -> fhe.PublicKey:
    """Alias: fold :func:`public_key.aggregate` over ``PublicKeyShare(s)``."""
    return fold(context, public_key.aggregate, [public_key.PublicKeyShare(s) for s in shares],
                ProtocolKind.PUBLIC_KEY).key


def finalize_public_key(context: MheContext, joint: fhe.PublicKey) -> None:
    """Alias of :func:`public_key.finalize`."""
    public_key.finalize(context, public_key.PublicKeyShare(joint))


def aggregate_relin_round1(context: MheContext, shares: Sequence[fhe.EvalKey]) -> fhe.EvalKey:
    """Alias: fold :func:`relin.aggregate_round1`."""
    return fold(context, relin.aggregate_round1, [relin.RelinRound1Share(s) for s in shares],
                ProtocolKind.RELIN_ROUND1).key


def aggregate_relin_round2(context: MheContext, shares: Sequence[fhe.EvalKey]) -> fhe.EvalKey:
    """Alias: fold :func:`relin.aggregate_round2`."""
    return fold(context, relin.aggregate_round2, [relin.RelinRound2Share(s) for s in shares],
                ProtocolKind.RELIN_ROUND2).key


def finalize_relin_key(context: MheContext, key: fhe.EvalKey) -> None:
    """Alias of :func:`relin.finalize`."""
    relin.finalize(context, relin.RelinRound2Share(key))


def aggregate_rotation_keys(context: MheContext, shares: Sequence[fhe.EvalKeyMap]) -> fhe.EvalKeyMap:
    """Alias: fold :func:`rotation.aggregate` (the rotation set is not known here: none is checked)."""
    return fold(context, rotation.aggregate, [rotation.RotationShare(s, ()) for s in shares],
                ProtocolKind.ROTATION).keys


def finalize_rotation_keys(context: MheContext, joint: fhe.EvalKeyMap, rotations: Sequence[int]) -> None:
    """Alias of :func:`rotation.finalize`."""
    rotation.finalize(context, rotation.RotationShare(joint, tuple(rotations)))


def fuse_decryption(context: MheContext, shares: Sequence[Sequence[Ciphertext]],
                    length: int | None = None) -> list[np.ndarray]:
    """Alias: fold :func:`decryption.aggregate`, then :func:`decryption.finalize`."""
    _per_ciphertext(shares, ProtocolKind.DECRYPTION)
    agg = fold(context, decryption.aggregate, [decryption.DecryptionShare(tuple(s)) for s in shares],
               ProtocolKind.DECRYPTION)
    return decryption.finalize(context, agg, length)


def refresh_prepare(context: MheContext, cts: Sequence[Ciphertext]) -> RefreshRequest:
    """Alias of :func:`refresh.prepare`."""
    return refresh.prepare(context, cts)


def aggregate_refresh(context: MheContext,
                      shares: Sequence[Sequence[Sequence[Ciphertext]]]) -> list[list[Ciphertext]]:
    """Alias: fold :func:`refresh.aggregate` over ``shares[party][ciphertext] = (h0, h1)``."""
    _per_ciphertext(shares, ProtocolKind.REFRESH)
    if any(len(pair) != 2 for s in shares for pair in s):
        raise ProtocolError("a refresh share must be a pair of ciphertexts")
    parts = [refresh.RefreshShare(tuple(tuple(pair) for pair in s)) for s in shares]
    if len(parts) == 1:  # a fold of one share returns it: clone, as the aggregate of several is new
        parts = [refresh.RefreshShare(tuple((h0.Clone(), h1.Clone()) for h0, h1 in parts[0].pairs))]
    agg = fold(context, refresh.aggregate, parts, ProtocolKind.REFRESH)
    return [list(pair) for pair in agg.pairs]


def refresh_finalize(context: MheContext, request: RefreshRequest,
                     aggregated: Sequence[Sequence[Ciphertext]]) -> list[Ciphertext]:
    """Alias of :func:`refresh.finalize`."""
    return refresh.finalize(context, request, refresh.RefreshShare(tuple(tuple(p) for p in aggregated)))


def aggregate_key_switch(context: MheContext, shares: Sequence[Sequence[Ciphertext]]) -> list[Ciphertext]:
    """Alias: fold :func:`key_switch.aggregate`, then :func:`key_switch.finalize`."""
    _per_ciphertext(shares, ProtocolKind.KEY_SWITCH)
    agg = fold(context, key_switch.aggregate, [key_switch.KeySwitchShare(tuple(s)) for s in shares],
               ProtocolKind.KEY_SWITCH)
    return key_switch.finalize(context, agg)
