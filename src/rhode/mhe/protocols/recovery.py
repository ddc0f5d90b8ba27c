"""t-out-of-N recovery of a data holder's secret share (Shamir sharing of its RNS residues).

After key generation each holder ``d`` splits its secret share ``s_d`` into N - 1 *pieces*, one for
every other holder ``j``: ``f_d(j + 1)`` for a random polynomial ``f_d`` of degree ``t - 1`` with
``f_d(0) = s_d``, evaluated independently for every residue of ``s_d`` modulo every RNS prime ``q_k``
(Shamir, 1979, over each ``Z_{q_k}``). Any ``t - 1`` pieces are uniformly random and independent of
``s_d``; any ``t`` rebuild it by Lagrange interpolation at 0 (:func:`rebuild`). The polynomial's
coefficients come from the operating system's CSPRNG (:mod:`secrets`), 128 bits reduced modulo each
prime (statistical distance < 2^-60 from uniform).

Why not OpenFHE's ``ShareKeys`` / ``RecoverSharedKey``: they compute the same sharing, but their pieces
are ``DCRTPoly`` objects, which OpenFHE's Python wheel can neither serialize nor rebuild from bytes, so a
piece could never reach another holder. The residues are read from the secret key's JSON serialization
and the rebuilt key is written back the same way (same context, same key tag), so no value ever leaves
OpenFHE's own key format. Linear operations commute with the number-theoretic transform, so the sharing
is exact in OpenFHE's evaluation representation.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import numpy as np
import openfhe as fhe

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.context import MheContext
from rhode.mhe.party import Party
from rhode.mhe.serial import Kind, frame, unframe


def check_threshold(threshold: int, n_parties: int) -> int:
    """A valid threshold: a strict majority ``n/2 < t <= n`` (ProtocolError otherwise)."""
    valid = isinstance(threshold, int) and not isinstance(threshold, bool)
    if not valid or not n_parties / 2 < threshold <= n_parties:
        raise ProtocolError(
            f"threshold {threshold!r} must be more than half of the {n_parties} data holders and at most "
            f"{n_parties}: with t <= N/2 two disjoint groups of t could each rebuild shares and decrypt "
            "without the others (OpenFHE's threshold FHE with aborts requires a majority too)")
    return threshold


@dataclass(frozen=True, eq=False)
class Piece:
    """Holder ``dealer``'s piece for holder ``recipient``: ``f_dealer(recipient + 1)`` per residue.

    Secret material: kept 0600 by its recipient, sent only sealed for one holder
    (:mod:`rhode.federated.sealing`), never logged."""

    dealer: int
    recipient: int
    key_tag: str
    moduli: tuple[int, ...]
    towers: tuple[np.ndarray, ...]  # residues (N,) uint64, one array per RNS prime

    def __repr__(self) -> str:
        return f"Piece(dealer={self.dealer}, recipient={self.recipient})"

    def __reduce__(self):
        raise TypeError("a Piece is secret material and cannot be pickled; use Piece.to_bytes()")

    def to_bytes(self, context: MheContext) -> bytes:
        payload = b"".join(np.ascontiguousarray(t, dtype="<u8").tobytes() for t in self.towers)
        meta = {"dealer": self.dealer, "recipient": self.recipient, "tag": self.key_tag,
                "moduli": [str(q) for q in self.moduli]}
        return frame(Kind.KEY_PIECE, context.params, payload, meta)

    @classmethod
    def from_bytes(cls, context: MheContext, data: bytes) -> Piece:
        payload, meta = unframe(Kind.KEY_PIECE, context.params, data)
        try:
            dealer, recipient = int(meta["dealer"]), int(meta["recipient"])
            moduli = tuple(int(q) for q in meta["moduli"])
            tag = str(meta["tag"])
        except (KeyError, TypeError, ValueError):
            raise SerializationError("key piece has an invalid header") from None
        n = context.params.ring_dim
        if not moduli or len(payload) != 8 * n * len(moduli) or dealer == recipient:
            raise SerializationError("key piece has an inconsistent size")
        arr = np.frombuffer(payload, dtype="<u8").reshape(len(moduli), n)
        if any(int(arr[k].max()) >= q for k, q in enumerate(moduli)):
            raise SerializationError("key piece has residues outside their moduli")
        return cls(dealer, recipient, tag, moduli, tuple(arr[k].copy() for k in range(len(moduli))))


def _key_json(secret: fhe.PrivateKey) -> dict:
    return json.loads(fhe.Serialize(secret, fhe.JSON))


def _towers(key: dict) -> list[dict]:
    try:
        return key["value0"]["ptr_wrapper"]["data"]["s"]["v"]
    except (KeyError, TypeError):
        raise ProtocolError("OpenFHE's secret-key format is not the one this rhode reads") from None


def _residues(key: dict) -> tuple[tuple[int, ...], list[np.ndarray]]:
    moduli, values = [], []
    for tower in _towers(key):
        data = tower["v"]["ptr_wrapper"]["data"]
        moduli.append(int(data["m"]["v"]))
        values.append(np.array([int(v) for v in data["v"]], dtype=object))
    return tuple(moduli), values


def _uniform(q: int, n: int) -> np.ndarray:
    """``n`` values uniform modulo ``q`` (128 CSPRNG bits each, reduced)."""
    words = np.frombuffer(secrets.token_bytes(16 * n), dtype="<u8").reshape(n, 2).astype(object)
    return (words[:, 0] * (1 << 64) + words[:, 1]) % q


def split(party: Party, n_parties: int, threshold: int) -> dict[int, Piece]:
    """``party``'s pieces for every other holder: recipient index -> :class:`Piece` (degree t - 1)."""
    check_threshold(threshold, n_parties)
    if threshold == n_parties:
        return {}
    moduli, values = party.with_secret(lambda s: _residues(_key_json(s)))
    coeffs = [[_uniform(q, len(v)) for _ in range(threshold - 1)]
              for q, v in zip(moduli, values, strict=True)]
    out = {}
    for j in range(n_parties):
        if j == party.index:
            continue
        x, towers = j + 1, []
        for q, s, cs in zip(moduli, values, coeffs, strict=True):
            acc = np.zeros(len(s), dtype=object)
            for c in reversed(cs):  # Horner: ((a_{t-1} x + a_{t-2}) x + ...) x + s
                acc = (acc + c) * x % q
            towers.append(((acc + s) % q).astype(np.uint64))
        out[j] = Piece(party.index, j, party.context.key_tag, moduli, tuple(towers))
    return out


def lagrange_at_zero(xs: list[int], q: int) -> list[int]:
    """Lagrange coefficients at 0 for the points ``xs`` modulo the prime ``q``."""
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num, den = num * xm % q, den * (xm - xj) % q
        out.append(num * pow(den, -1, q) % q)
    return out


def rebuild(template: Party, dealer: int, pieces: list[Piece], threshold: int) -> Party:
    """Holder ``dealer``'s secret share from ``threshold`` of its pieces, as a :class:`Party` of index
    ``dealer`` in ``template``'s context (``template``: the rebuilding holder's own share, whose key
    format the rebuilt one takes)."""
    ctx = template.context
    pieces = sorted(pieces, key=lambda p: p.recipient)[:threshold] if len(pieces) >= threshold else pieces
    if len(pieces) < threshold or len({p.recipient for p in pieces}) < threshold:
        raise ProtocolError(f"rebuilding data holder {dealer}'s share needs {threshold} distinct pieces, "
                            f"got {len({p.recipient for p in pieces})}")
    if any(p.dealer != dealer or p.key_tag != ctx.key_tag for p in pieces):
        raise ProtocolError(
            f"a piece given to rebuild data holder {dealer}'s share is of another holder or key")
    key = template.with_secret(_key_json)
    towers = _towers(key)
    moduli = tuple(int(t["v"]["ptr_wrapper"]["data"]["m"]["v"]) for t in towers)
    if any(p.moduli != moduli for p in pieces):
        raise ProtocolError("the pieces were made under other moduli than this context's")
    xs = [p.recipient + 1 for p in pieces]
    for k, (tower, q) in enumerate(zip(towers, moduli, strict=True)):
        acc = np.zeros(ctx.params.ring_dim, dtype=object)
        for lam, p in zip(lagrange_at_zero(xs, q), pieces, strict=True):
            acc = (acc + p.towers[k].astype(object) * lam) % q
        tower["v"]["ptr_wrapper"]["data"]["v"] = [int(v) for v in acc]
    try:
        secret = fhe.DeserializePrivateKeyString(json.dumps(key), fhe.JSON)
    except Exception:
        raise ProtocolError(f"OpenFHE did not accept data holder {dealer}'s rebuilt share") from None
    return Party(ctx, dealer, secret)


