"""What every collective protocol shares: the party count, the protocol names, the interface of a
party towards the protocols, and the pairwise fold that drives any of them.

Every protocol module of :mod:`rhode.mhe.protocols` has the Lattigo shape:

* ``gen_share(party, ...)``: a party makes its share from its secret (the only secret-touching step,
  through :meth:`SecretHolder.with_secret`);
* ``aggregate(context, a, b)``: two shares (or partial aggregates) combine into one, without changing
  either input; the combination is commutative and associative, so the aggregator may fold shares in
  any order, as they arrive (:func:`fold`, :class:`Accumulator`);
* ``finalize(context, ...)``: the aggregate becomes a key (installed in the context) or ciphertexts.

Each share type knows its byte form: ``share.to_bytes(context)`` and
``ShareType.from_bytes(context, data, ...)`` (validated framing of :mod:`rhode.mhe.codec`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

import openfhe as fhe

from rhode.errors import ParameterError, ProtocolError
from rhode.mhe.context import MheContext

MIN_PARTIES = 2
MAX_PARTIES = 16

S = TypeVar("S")
T = TypeVar("T")


class ProtocolKind(enum.Enum):
    """The collective protocols (the value names the share in messages)."""

    PUBLIC_KEY = "public-key"
    RELIN_ROUND1 = "relinearization round-1"
    RELIN_ROUND2 = "relinearization round-2"
    ROTATION = "rotation-key"
    DECRYPTION = "decryption"
    REFRESH = "refresh"
    KEY_SWITCH = "key-switch"


class SecretHolder(Protocol):
    """What a protocol needs from a party (:class:`rhode.mhe.party.Party` is the implementation)."""

    @property
    def context(self) -> MheContext:
        """The shared public context."""

    @property
    def index(self) -> int:
        """Position of the party (0: the lead)."""

    @property
    def is_lead(self) -> bool:
        """Whether the party is the lead, whose shares fix the CRPs and carry ``c0``."""

    @property
    def public_key_share(self) -> fhe.PublicKey | None:
        """The public-key share made with the secret (``None`` for a party read from a file)."""

    def with_secret(self, fn: Callable[[fhe.PrivateKey], T]) -> T:
        """``fn(secret)``: the only way a protocol reaches the secret (``fn`` returns a share)."""


def check_party_count(n: int) -> int:
    """Validate the number of data holders (2 to 16)."""
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_PARTIES <= n <= MAX_PARTIES:
        raise ParameterError(
            f"the number of parties must be an integer from {MIN_PARTIES} to {MAX_PARTIES}, got {n!r}")
    return n


def require_lead(party: SecretHolder, what: str) -> None:
    """Raise :class:`ProtocolError` unless ``party`` is the lead (index 0)."""
    if not party.is_lead:
        raise ProtocolError(f"only the lead (party 0) makes the {what}, not party {party.index}")


def check_same_count(a: int, b: int, what: ProtocolKind) -> None:
    """Two per-ciphertext shares must cover the same number of ciphertexts."""
    if a != b:
        raise ProtocolError(f"every party must send one {what.value} share per ciphertext")


def fold(context: MheContext, aggregate: Callable[[MheContext, S, S], S], shares: Iterable[S],
         what: ProtocolKind) -> S:
    """Aggregate ``shares`` pairwise, left to right: ``aggregate(aggregate(s0, s1), s2) ...``.

    Any order gives the same result (the aggregations are associative and commutative). Raises
    :class:`ProtocolError` for no shares."""
    acc = Accumulator(context, aggregate, what)
    for s in shares:
        acc.add(s)
    return acc.result()


class Accumulator(Generic[S]):
    """Folds shares one at a time, as they arrive (holds one partial aggregate, never a list)."""

    __slots__ = ("context", "aggregate", "what", "count", "_acc")

    def __init__(self, context: MheContext, aggregate: Callable[[MheContext, S, S], S],
                 what: ProtocolKind) -> None:
        self.context = context
        self.aggregate = aggregate
        self.what = what
        self.count = 0
        self._acc: S | None = None

    def add(self, share: S) -> None:
        """Fold one more share in (the inputs are never modified, so ``share`` may be reused)."""
        self._acc = share if self.count == 0 else self.aggregate(self.context, self._acc, share)
        self.count += 1

    def result(self) -> S:
        """The aggregate of every share added so far."""
        if self.count == 0:
            raise ProtocolError(f"no {self.what.value} shares to aggregate")
        return self._acc


_CT_SIZES: dict[tuple, int] = {}


def payload_size(obj: object, kind: ProtocolKind | str | None = None) -> int:
    """Serialized (BINARY) size of an OpenFHE object or a nested list of them, as sent on the wire
    (without the rhode frame). A ciphertext's size depends only on its kind of share (refresh shares
    are compressed to fewer towers, which ``GetLevel`` does not show), its context's modulus chain,
    its level and its number of elements: it is serialized once per such shape (``kind`` is only
    part of that cache key)."""
    if isinstance(obj, (list, tuple)):
        return sum(payload_size(o, kind) for o in obj)
    if isinstance(obj, fhe.Ciphertext):
        cc = obj.GetCryptoContext()
        key = (kind, cc.GetRingDimension(), cc.GetModulus(), obj.GetLevel(), obj.NumberCiphertextElements())
        if key not in _CT_SIZES:
            _CT_SIZES[key] = len(fhe.Serialize(obj, fhe.BINARY))
        return _CT_SIZES[key]
    return len(fhe.Serialize(obj, fhe.BINARY))
