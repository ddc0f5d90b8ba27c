"""The collective protocols, one module each, in the Lattigo multiparty shape (see :mod:`.base`):

* :mod:`.public_key` - collective public key (the lead's share is the CRP);
* :mod:`.relin` - relinearization key, two rounds (the lead's round-1 share is the CRP);
* :mod:`.rotation` - joint rotation keys (the lead's share is the CRP);
* :mod:`.decryption` - threshold decryption with noise flooding;
* :mod:`.refresh` - interactive multiparty bootstrapping;
* :mod:`.key_switch` - public-key switch to a querier.

Each has share types that know their byte form, ``gen_share(party, ...)``, a pairwise
``aggregate(context, a, b)`` (commutative, associative, inputs untouched) and ``finalize``.
:func:`~.base.fold` / :class:`~.base.Accumulator` drive any of them.
"""

from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation
from rhode.mhe.protocols.base import Accumulator, ProtocolKind, fold

__all__ = ["Accumulator", "ProtocolKind", "decryption", "fold", "key_switch", "public_key", "refresh",
           "relin", "rotation"]
