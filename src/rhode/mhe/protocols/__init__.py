"""The collective protocols, one module each, in the Lattigo multiparty shape (see :mod:`.base`):

* :mod:`.public_key` - collective public key (the lead's share is the CRP);
* :mod:`.relin` - relinearization key, two rounds (the lead's round-1 share is the CRP);
* :mod:`.rotation` - joint rotation keys (the lead's share is the CRP);
* :mod:`.decryption` - threshold decryption with noise flooding;
* :mod:`.refresh` - interactive multiparty bootstrapping;
* :mod:`.key_switch` - public-key switch to a querier.

Each has share types that know their byte form, ``gen_share(party, ...)``, a pairwise
``aggregate(context, a, b)`` (commutative, associative, inputs untouched) and ``finalize``.
:func:`fold` / :class:`Accumulator` drive any of them; :data:`MODULES` maps a :class:`ProtocolKind`
to its module. The former list-based names (``aggregate_public_key``, ``fuse_decryption``, ...) are
aliases from :mod:`.legacy`.
"""

from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation
from rhode.mhe.protocols.base import (
    MAX_PARTIES,
    MIN_PARTIES,
    Accumulator,
    ProtocolKind,
    SecretHolder,
    check_party_count,
    fold,
)
from rhode.mhe.protocols.legacy import (
    aggregate_key_switch,
    aggregate_public_key,
    aggregate_refresh,
    aggregate_relin_round1,
    aggregate_relin_round2,
    aggregate_rotation_keys,
    finalize_public_key,
    finalize_relin_key,
    finalize_rotation_keys,
    fuse_decryption,
    refresh_finalize,
    refresh_prepare,
)
from rhode.mhe.protocols.refresh import RefreshRequest

MODULES = {
    ProtocolKind.PUBLIC_KEY: public_key,
    ProtocolKind.RELIN_ROUND1: relin,
    ProtocolKind.RELIN_ROUND2: relin,
    ProtocolKind.ROTATION: rotation,
    ProtocolKind.DECRYPTION: decryption,
    ProtocolKind.REFRESH: refresh,
    ProtocolKind.KEY_SWITCH: key_switch,
}

__all__ = [
    "MAX_PARTIES",
    "MIN_PARTIES",
    "MODULES",
    "Accumulator",
    "ProtocolKind",
    "RefreshRequest",
    "SecretHolder",
    "aggregate_key_switch",
    "aggregate_public_key",
    "aggregate_refresh",
    "aggregate_relin_round1",
    "aggregate_relin_round2",
    "aggregate_rotation_keys",
    "check_party_count",
    "decryption",
    "finalize_public_key",
    "finalize_relin_key",
    "finalize_rotation_keys",
    "fold",
    "fuse_decryption",
    "key_switch",
    "public_key",
    "refresh",
    "refresh_finalize",
    "refresh_prepare",
    "relin",
    "rotation",
]
