"""All N data holders and the aggregator in one process (tests, benchmarks, the in-process engine).

:class:`LocalCollective` drives the protocols of :mod:`rhode.mhe.protocols` in process: every party's
``gen_share`` is folded into one aggregate as it is made (:class:`~rhode.mhe.protocols.base.Accumulator`),
then finalized. It holds no protocol logic of its own. Keys are held once: the joint evaluation keys
sit in OpenFHE's static maps under the joint tag, shared by every party object. ``stats`` counts
what a deployment would send, per party.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.params import CkksParams
from rhode.mhe.party import Party
from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation
from rhode.mhe.protocols.base import Accumulator, ProtocolKind, check_party_count

S = TypeVar("S")


def _new_stats() -> dict:
    return {"refresh_rounds": 0, "refreshed_ciphertexts": 0, "decryption_rounds": 0,
            "key_switch_rounds": 0, "bytes_per_party": 0}


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
        check_party_count(n_parties)
        self.context = ctx = MheContext(params)
        self.measure_bytes = measure_bytes
        self.stats: dict = _new_stats()
        lead = Party.create(ctx, 0)
        crp = public_key.PublicKeyCrp.of(public_key.gen_share(lead))
        self.parties: list[Party] = [lead] + [Party.create(ctx, i, crp) for i in range(1, n_parties)]
        public_key.finalize(ctx, self._round(public_key.gen_share, public_key.aggregate,
                                             ProtocolKind.PUBLIC_KEY))
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
        check_party_count(len(parties))
        if [p.index for p in parties] != list(range(len(parties))):
            raise ProtocolError("a collective needs exactly the parties 0..N-1")
        if any(p.context is not context for p in parties):
            raise ProtocolError("every party must belong to the given context")
        self = cls.__new__(cls)
        self.context = context
        self.parties = list(parties)
        self.measure_bytes = measure_bytes
        self.stats = _new_stats()
        return self

    def __repr__(self) -> str:
        return f"LocalCollective(n_parties={len(self.parties)}, context={self.context!r})"

    @property
    def n_parties(self) -> int:
        """Number of data holders."""
        return len(self.parties)

    def _round(self, gen: Callable[[Party], S], aggregate: Callable[[MheContext, S, S], S],
               what: ProtocolKind, parties: Sequence[Party] | None = None) -> S:
        """One round: every party's ``gen(party)``, folded as it is made. Accounts the bytes of one
        share (every party's share has one size) in ``stats["bytes_per_party"]``."""
        acc = Accumulator(self.context, aggregate, what)
        for p in self.parties if parties is None else parties:
            share = gen(p)
            if acc.count == 0 and self.measure_bytes:
                self.stats["bytes_per_party"] += share.payload_size()
            acc.add(share)
        return acc.result()

    # -- key generation -------------------------------------------------------------------------------
    def _relin_keygen(self) -> None:
        crp = relin.gen_crp(self.parties[0])
        round1 = self._round(lambda p: relin.gen_round1(p, crp), relin.aggregate_round1,
                             ProtocolKind.RELIN_ROUND1)
        round2 = self._round(lambda p: relin.gen_round2(p, round1), relin.aggregate_round2,
                             ProtocolKind.RELIN_ROUND2)
        relin.finalize(self.context, round2)

    def add_rotation_keys(self, rotations: Iterable[int]) -> None:
        """Run collective rotation-key generation for the requested offsets that have no key yet."""
        missing = sorted(self.context.missing_rotations(rotations))
        if not missing:
            return
        crp = rotation.gen_crp(self.parties[0], missing)
        joint = self._round(lambda p: rotation.gen_share(p, crp), rotation.aggregate, ProtocolKind.ROTATION)
        rotation.finalize(self.context, joint)

    # -- ciphertext operations ------------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> Ciphertext:
        """Encrypt a real vector (length <= slots, zero-padded) at level 0 under the joint key."""
        return self.context.encrypt(values)

    def refresh(self, cts: Sequence[Ciphertext]) -> list[Ciphertext]:
        """One collective refresh round for all ``cts`` (each with >= 3 towers left) -> level 0."""
        cts = list(cts)
        if not cts:
            return []
        req = refresh.prepare(self.context, cts)
        agg = self._round(lambda p: refresh.gen_share(p, req), refresh.aggregate, ProtocolKind.REFRESH)
        out = refresh.finalize(self.context, req, agg)
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
        agg = self._round(lambda p: decryption.gen_share(p, cts, flood), decryption.aggregate,
                          ProtocolKind.DECRYPTION, [self.parties[i] for i in idx])
        self.stats["decryption_rounds"] += 1
        return decryption.finalize(self.context, agg, length)

    def key_switch(self, cts: Sequence[Ciphertext],
                   querier_public_key: fhe.PublicKey) -> list[Ciphertext]:
        """Switch ``cts`` from the joint key to a querier's public key (one collective round)."""
        cts = list(cts)
        agg = self._round(lambda p: key_switch.gen_share(p, cts, querier_public_key),
                          key_switch.aggregate, ProtocolKind.KEY_SWITCH)
        self.stats["key_switch_rounds"] += 1
        return key_switch.finalize(self.context, agg)
