"""Threshold (N-out-of-N) CKKS over OpenFHE: parameters, keys, shares, protocols, serialization.

The only package of rhode that imports :mod:`openfhe`. Public API:

* :class:`CkksParams`, :func:`preset`, :data:`PRESETS`, :func:`make_context` - parameters.
* :class:`MheContext` - secret-free public side (CryptoContext, joint public key, key bookkeeping).
* :class:`Party` - one data holder, one secret share (reached by the protocols through
  :meth:`Party.with_secret`).
* :mod:`rhode.mhe.protocols` - one module per collective protocol (share types with their byte
  form, ``gen_share``, pairwise ``aggregate``, ``finalize``).
* :mod:`rhode.mhe.serial` - validated framing and codecs.
* :mod:`rhode.mhe.evaluator` - secret-free arithmetic with operation counters.
* :class:`LocalCollective` - all parties in one process; :class:`Querier` - a querier's key pair.
"""

from rhode.mhe.collective import LocalCollective
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.params import PRESETS, CkksParams, make_context, preset
from rhode.mhe.party import Party
from rhode.mhe.protocols.base import check_party_count
from rhode.mhe.querier import Querier

__all__ = ["PRESETS", "Ciphertext", "CkksParams", "LocalCollective", "MheContext", "Party", "Querier",
           "check_party_count", "make_context", "preset"]
