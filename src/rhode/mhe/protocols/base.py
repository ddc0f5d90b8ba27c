"""What every collective protocol shares: the party count, the protocol names, the interface of a
party towards the protocols, the pairwise fold that drives any of them, and the share types that
are one key (:class:`KeyShare`) or one element per ciphertext (:class:`CiphertextShare`).

Every protocol module of :mod:`rhode.mhe.protocols` has the Lattigo shape:

* ``gen_share(party, ...)``: a party makes its share from its secret (the only secret-touching step,
  through :meth:`SecretHolder.with_secret`);
* ``aggregate(context, a, b)``: two shares (or partial aggregates) combine into one, without changing
  either input; the combination is commutative and associative, so the aggregator may fold shares in
  any order, as they arrive (:func:`fold`, :class:`Accumulator`);
* ``finalize(context, ...)``: the aggregate becomes a key (installed in the context) or ciphertexts.

Each share type knows its byte form: ``share.to_bytes(context)`` and
``ShareType.from_bytes(context, data, ...)`` (validated framing of :mod:`rhode.mhe.serial`), and the
size of its OpenFHE payload, ``share.payload_size()``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from typing import ClassVar, Generic, Protocol, TypeVar

import openfhe as fhe

from rhode.errors import ParameterError, ProtocolError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.serial import Kind, ciphertexts_from_bytes, ciphertexts_to_bytes, key_from_bytes, key_to_bytes

MIN_PARTIES = 2
MAX_PARTIES = 16

S = TypeVar("S")
T = TypeVar("T")
K = TypeVar("K")
KS = TypeVar("KS", bound="KeyShare")
CS = TypeVar("CS", bound="CiphertextShare")
C = TypeVar("C")


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


# -- share types ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class KeyShare(Generic[K]):
    """A share that is one OpenFHE key (a public-key share, a relinearization round-1 or round-2
    share), or a partial sum of such shares. A subclass names its frame kind (``KIND``) and its
    protocol (``PROTOCOL``)."""

    key: K
    KIND: ClassVar[Kind]
    PROTOCOL: ClassVar[ProtocolKind]

    def to_bytes(self, context: MheContext) -> bytes:
        """Framed as ``KIND`` (:func:`rhode.mhe.serial.key_to_bytes`)."""
        return key_to_bytes(context, self.key, self.KIND)

    @classmethod
    def from_bytes(cls: type[KS], context: MheContext, data: bytes, key_tag: str | None = None) -> KS:
        """Inverse of :meth:`to_bytes`; ``key_tag`` (optional) must match."""
        return cls(key_from_bytes(context, data, cls.KIND, key_tag))

    def payload_size(self) -> int:
        """Bytes of the OpenFHE payload."""
        return payload_size(self.key, self.PROTOCOL)


@dataclasses.dataclass(frozen=True, eq=False)
class CiphertextShare:
    """One party's shares of a batch of ciphertexts (one ciphertext-shaped share each, at the level
    of its ciphertext), or a partial sum of several parties' shares of the same batch. A subclass
    names its frame kind (``KIND``) and its protocol (``PROTOCOL``)."""

    cts: tuple[Ciphertext, ...]
    KIND: ClassVar[Kind]
    PROTOCOL: ClassVar[ProtocolKind]

    def to_bytes(self, context: MheContext) -> bytes:
        """Framed as ``KIND``, with their levels (:func:`rhode.mhe.serial.ciphertexts_to_bytes`)."""
        return ciphertexts_to_bytes(context, self.cts, self.KIND)

    @classmethod
    def from_bytes(cls: type[CS], context: MheContext, data: bytes, key_tag: str | None = None,
                   count: int | None = None) -> CS:
        """Inverse of :meth:`to_bytes`: checks ring, context, level, number of elements, the key tag
        (by default the joint key's; none for key-switch shares, which are under the querier's key:
        pass its tag) and, if given, the number ``count`` of ciphertexts."""
        return cls(tuple(ciphertexts_from_bytes(context, data, cls.KIND, key_tag=key_tag, count=count)))

    def payload_size(self) -> int:
        """Bytes of the OpenFHE payload."""
        return payload_size(list(self.cts), self.PROTOCOL)


class Crp:
    """Mixin of a CRP type: the lead's share read as the common reference polynomial(s) that every
    other party's share is made with (the fields and the byte form of the lead's share)."""

    @classmethod
    def of(cls: type[C], lead_share: object) -> C:
        """The CRP carried by the lead's share."""
        return cls(*(getattr(lead_share, f.name) for f in dataclasses.fields(lead_share)))
