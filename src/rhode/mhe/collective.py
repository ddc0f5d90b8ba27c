"""All N data holders and the aggregator in one process (tests, benchmarks, the in-process engine).

:class:`LocalCollective` runs every protocol of :mod:`rhode.mhe.protocols` by calling the parties'
share methods and the aggregator's secret-free steps directly. Keys are held once: the joint
evaluation keys sit in OpenFHE's static maps under the joint tag, shared by every party object.
``stats`` counts what a deployment would send, per party.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe import protocols as P
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.params import CkksParams
from rhode.mhe.party import Party

_CT_SIZES: dict[tuple, int] = {}


def _nbytes(obj, kind: str = "") -> int:
    """Serialized (BINARY) size of an OpenFHE object or a nested list of them. A ciphertext's size
    depends only on its kind of share (refresh shares are compressed to fewer towers, which
    ``GetLevel`` does not show), its context's modulus chain, its level and its number of elements:
    it is serialized once per such shape."""
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o, kind) for o in obj)
    if isinstance(obj, fhe.Ciphertext):
        cc = obj.GetCryptoContext()
        key = (kind, cc.GetRingDimension(), cc.GetModulus(), obj.GetLevel(), obj.NumberCiphertextElements())
        if key not in _CT_SIZES:
            _CT_SIZES[key] = len(fhe.Serialize(obj, fhe.BINARY))
        return _CT_SIZES[key]
    return len(fhe.Serialize(obj, fhe.BINARY))


class LocalCollective:
    """N parties with one secret share each, plus the aggregator's combining steps.

    Args:
        params: CKKS parameters (e.g. ``preset("test")``).
        n_parties: number of data holders, 2 to 16.
        rotations: slot offsets that need joint rotation keys (more can be added later).
        measure_bytes: count the serialized size of every share in ``stats["bytes_per_party"]``
            (costs one serialization per share).

    Attributes:
        context: the shared public context (joint public key and relinearization key installed).
        parties: the N parties, lead first.
        stats: ``refresh_rounds``, ``refreshed_ciphertexts``, ``decryption_rounds``,
            ``key_switch_rounds``, ``bytes_per_party`` (total bytes each party would have sent).
    """

    def __init__(self, params: CkksParams, n_parties: int, rotations: Iterable[int] = (),
                 measure_bytes: bool = True) -> None:
        P.check_party_count(n_parties)
        self.context = MheContext(params)
        self.measure_bytes = measure_bytes
        self.stats: dict = {"refresh_rounds": 0, "refreshed_ciphertexts": 0, "decryption_rounds": 0,
                            "key_switch_rounds": 0, "bytes_per_party": 0}
        ctx = self.context
        lead = Party.create(ctx, 0)
        self.parties: list[Party] = [lead] + [
            Party.create(ctx, i, lead.public_key_share) for i in range(1, n_parties)]
        self._sent(lambda p: p.public_key_share, "public_key")
        P.finalize_public_key(ctx, P.aggregate_public_key(ctx, [p.public_key_share for p in self.parties]))
        for p in self.parties:
            p.bind_to_joint_key()
        self._relin_keygen()
        self.add_rotation_keys(rotations)

    @classmethod
    def from_parts(cls, context: MheContext, parties: Sequence[Party],
                   measure_bytes: bool = True) -> LocalCollective:
        """Reassemble a collective from a context whose keys are installed (e.g. by
        :func:`rhode.mhe.serial.load_eval_keys`) and its parties ``0..N-1`` (e.g. from
        :meth:`Party.load`). Runs no key generation."""
        context.require_public_key()
        if not context.has_relin_key:
            raise ProtocolError("the context has no relinearization key; load the evaluation keys first")
        parties = sorted(parties, key=lambda p: p.index)
        P.check_party_count(len(parties))
        if [p.index for p in parties] != list(range(len(parties))):
            raise ProtocolError("a collective needs exactly the parties 0..N-1")
        if any(p.context is not context for p in parties):
            raise ProtocolError("every party must belong to the given context")
        self = cls.__new__(cls)
        self.context = context
        self.parties = list(parties)
        self.measure_bytes = measure_bytes
        self.stats = {"refresh_rounds": 0, "refreshed_ciphertexts": 0, "decryption_rounds": 0,
                      "key_switch_rounds": 0, "bytes_per_party": 0}
        return self

    def __repr__(self) -> str:
        return f"LocalCollective(n_parties={len(self.parties)}, context={self.context!r})"

    @property
    def n_parties(self) -> int:
        """Number of data holders."""
        return len(self.parties)

    def _sent(self, per_party, kind: str) -> list:
        """Collect one share per party via ``per_party(party)``; account its bytes (``kind`` names
        the share for the size cache of :func:`_nbytes`)."""
        shares = [per_party(p) for p in self.parties]
        if self.measure_bytes:
            self.stats["bytes_per_party"] += _nbytes(shares[0], kind)  # every party's share has one size
        return shares

    # -- key generation -------------------------------------------------------------------------------
    def _relin_keygen(self) -> None:
        ctx = self.context
        lead_r1 = self.parties[0].relin_share_round1()
        r1 = [lead_r1] + [p.relin_share_round1(lead_r1) for p in self.parties[1:]]
        if self.measure_bytes:
            self.stats["bytes_per_party"] += _nbytes(lead_r1)
        round1 = P.aggregate_relin_round1(ctx, r1)
        r2 = self._sent(lambda p: p.relin_share_round2(round1), "relin2")
        P.finalize_relin_key(ctx, P.aggregate_relin_round2(ctx, r2))

    def add_rotation_keys(self, rotations: Iterable[int]) -> None:
        """Run collective rotation-key generation for the requested offsets that have no key yet."""
        ctx = self.context
        missing = sorted(ctx.missing_rotations(rotations))
        if not missing:
            return
        lead_share = self.parties[0].rotation_key_share(missing)
        shares = [lead_share] + [p.rotation_key_share(missing, lead_share) for p in self.parties[1:]]
        if self.measure_bytes:
            self.stats["bytes_per_party"] += _nbytes(lead_share)
        P.finalize_rotation_keys(ctx, P.aggregate_rotation_keys(ctx, shares), missing)

    # -- ciphertext operations ------------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> Ciphertext:
        """Encrypt a real vector (length <= slots, zero-padded) at level 0 under the joint key."""
        return self.context.encrypt(values)

    def refresh(self, cts: Sequence[Ciphertext]) -> list[Ciphertext]:
        """One collective refresh round for all ``cts`` (each with >= 3 towers left) -> level 0."""
        cts = list(cts)
        if not cts:
            return []
        ctx = self.context
        req = P.refresh_prepare(ctx, cts)
        shares = self._sent(lambda p: p.refresh_share(req.c1s, req.crps), "refresh")
        out = P.refresh_finalize(ctx, req, P.aggregate_refresh(ctx, shares))
        self.stats["refresh_rounds"] += 1
        self.stats["refreshed_ciphertexts"] += len(cts)
        return out

    def decrypt(self, cts: Sequence[Ciphertext], length: int | None = None,
                flood: bool = True) -> list[np.ndarray]:
        """Threshold decryption by all parties; real parts, ``length`` values each (default: slots).
        Shares are flooded unless ``flood=False`` (in-process inspection only)."""
        return self.decrypt_partial(cts, range(self.n_parties), length, flood)

    def decrypt_partial(self, cts: Sequence[Ciphertext], party_indices: Sequence[int],
                        length: int | None = None, flood: bool = True) -> list[np.ndarray]:
        """Fuse the decryption shares of only ``party_indices`` (for tests: fewer than N must not
        recover the message). A fusion OpenFHE cannot decode raises :class:`ProtocolError`."""
        idx = sorted(set(int(i) for i in party_indices))
        if not idx or idx[0] < 0 or idx[-1] >= self.n_parties:
            raise ProtocolError(f"party indices must be within 0..{self.n_parties - 1}, got {idx}")
        cts = list(cts)
        shares = [self.parties[i].decryption_share(cts, flood) for i in idx]
        if self.measure_bytes:
            self.stats["bytes_per_party"] += _nbytes(shares[0], "decryption")  # one size for all parties
        self.stats["decryption_rounds"] += 1
        return P.fuse_decryption(self.context, shares, length)

    def key_switch(self, cts: Sequence[Ciphertext],
                   querier_public_key: fhe.PublicKey) -> list[Ciphertext]:
        """Switch ``cts`` from the joint key to a querier's public key (one collective round)."""
        cts = list(cts)
        shares = self._sent(lambda p: p.key_switch_share(cts, querier_public_key), "key_switch")
        self.stats["key_switch_rounds"] += 1
        return P.aggregate_key_switch(self.context, shares)
