"""One exception hierarchy for everything rhode raises on purpose.

Every error a user can cause (bad parameters, bad data, a protocol that cannot proceed, corrupted
bytes) is a :class:`RhodeError` whose message says what to fix. Messages never contain secret
material.
"""

from __future__ import annotations


class RhodeError(Exception):
    """Base class of every error rhode raises on purpose."""


class ParameterError(RhodeError):
    """Inconsistent or unsupported cryptographic, model or training parameters."""


class DataError(RhodeError):
    """Unreadable, malformed or unsuitable input data (CSV files, arrays, windows)."""


class ProtocolError(RhodeError):
    """A collective protocol cannot proceed (missing party, wrong share, mismatched state)."""


class HolderUnavailableError(ProtocolError):
    """Data holders did not answer a round (timed out, SuperNode gone, not connected).

    Attributes:
        parties: the indices of the data holders that did not answer.
    """

    def __init__(self, message: str, parties) -> None:
        super().__init__(message)
        self.parties = tuple(sorted(int(p) for p in parties))


class SerializationError(RhodeError):
    """Bytes that do not decode to the expected object (corrupted, truncated, wrong type or key)."""


class CheckpointError(RhodeError):
    """A checkpoint that is missing, corrupted or made with other parameters."""


class BudgetError(RhodeError):
    """A decryption that the joint key's decryption budget does not cover (the flooding was sized for
    fewer revealed ciphertexts)."""
