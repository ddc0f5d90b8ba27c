"""Threshold (N-out-of-N) CKKS over OpenFHE: parameters, keys, shares, protocols, serialization.

The only package of rhode that imports :mod:`openfhe`. Public API:

* :class:`CkksParams`, :func:`preset`, :data:`PRESETS`, :func:`make_context` - parameters.
* :class:`MheContext` - secret-free public side (CryptoContext, joint public key, key bookkeeping).
* :class:`Party` - one data holder, one secret share (reached by the protocols through
  :meth:`Party.with_secret`).
* :mod:`rhode.mhe.protocols` - one module per collective protocol (share types with their byte
  form, ``gen_share``, pairwise ``aggregate``, ``finalize``), :func:`~rhode.mhe.protocols.fold`.
* :mod:`rhode.mhe.codec` - validated framing and codecs (:mod:`rhode.mhe.serial`: former names).
* :class:`LocalCollective` - all parties in one process; :class:`Querier` - a querier's key pair.

The list-based aggregator functions re-exported below (``aggregate_public_key``, ...) are aliases of
the protocol modules (:mod:`rhode.mhe.protocols.legacy`).
"""

from rhode.mhe.collective import LocalCollective
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.params import PRESETS, CkksParams, make_context, preset
from rhode.mhe.party import Party
from rhode.mhe.protocols import (
    MAX_PARTIES,
    MIN_PARTIES,
    ProtocolKind,
    RefreshRequest,
    aggregate_key_switch,
    aggregate_public_key,
    aggregate_refresh,
    aggregate_relin_round1,
    aggregate_relin_round2,
    aggregate_rotation_keys,
    check_party_count,
    finalize_public_key,
    finalize_relin_key,
    finalize_rotation_keys,
    fold,
    fuse_decryption,
    refresh_finalize,
    refresh_prepare,
)
from rhode.mhe.querier import Querier

__all__ = [
    "MAX_PARTIES",
    "MIN_PARTIES",
    "PRESETS",
    "Ciphertext",
    "CkksParams",
    "LocalCollective",
    "MheContext",
    "Party",
    "ProtocolKind",
    "Querier",
    "RefreshRequest",
    "aggregate_key_switch",
    "aggregate_public_key",
    "aggregate_refresh",
    "aggregate_relin_round1",
    "aggregate_relin_round2",
    "aggregate_rotation_keys",
    "check_party_count",
    "finalize_public_key",
    "finalize_relin_key",
    "finalize_rotation_keys",
    "fold",
    "fuse_decryption",
    "make_context",
    "preset",
    "refresh_finalize",
    "refresh_prepare",
]
