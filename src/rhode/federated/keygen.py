"""Collective key generation with the encrypted global statistics, and the check of stored keys.

:class:`KeyGeneration` adds to the aggregator's rounds the 8 rounds of key generation (public key,
relinearization key in two rounds, exactly the rotation keys the packing needs) on which the two
secure sums of the global normalization statistics ride, and ``HELLO`` for a resumed or prediction run.
Rotation keys that do not fit one message (:data:`ROTATION_ROUND_BYTES`, rings of 2^15 and more) are
made in chunks: the first rides on the 8 rounds, each other chunk takes one more round, and the
pipeline two more to finish (``ROTATION_KEYS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from rhode.data import Stats
from rhode.errors import DataError, ProtocolError
from rhode.federated import codec as K
from rhode.federated.budget import Reveal
from rhode.federated.dataprep import unscale
from rhode.federated.payload import Blob, Payload
from rhode.federated.rounds import Rounds
from rhode.federated.schema import Field, Step, piece_blob
from rhode.mhe import MheContext
from rhode.mhe import serial as S
from rhode.mhe.evaluator import Evaluator
from rhode.mhe.protocols import public_key, relin, rotation
from rhode.mhe.protocols.base import ProtocolKind


@dataclass
class Schema:
    """The data holders' common data schema, as they published it in SETUP (all public)."""

    columns: list[str]
    target: str
    features: list[str]
    exps: list[int]
    total_rows: float

    @property
    def n_features(self) -> int:
        return len(self.features)


#: Most bytes of rotation-key shares one key-generation message carries (per holder): the rotation keys
#: of a large ring are generated in chunks of this size (2^15: ~25 MB per key, 29 keys in 3 chunks), so
#: that a deployment's processes do not each hold every share at once.
ROTATION_ROUND_BYTES = 256 << 20


def rotation_chunks(rotations: list[int], params, limit: int = ROTATION_ROUND_BYTES) -> list[list[int]]:
    """``rotations`` split into as few nearly equal chunks as keep each chunk's shares under ``limit``
    bytes (:attr:`~rhode.mhe.params.CkksParams.rotation_key_bytes` each); one chunk if they fit."""
    per = max(1, limit // params.rotation_key_bytes)
    n = max(1, -(-len(rotations) // per))
    size = -(-len(rotations) // n)
    return [list(rotations[k : k + size]) for k in range(0, len(rotations), size)] or [[]]


def pieces_for(recipient: int, answers: dict[int, Payload]) -> dict:
    """The sealed key pieces in ``answers`` (JOINT_KEY) addressed to ``recipient``, by dealer."""
    name = piece_blob(recipient)
    return {piece_blob(d): a.blobs[name] for d, a in answers.items() if d != recipient and name in a.blobs}


class KeyGeneration(Rounds):
    """Key generation and ``HELLO`` (see module docstring).

    Attributes:
        rotation_round_bytes: the most bytes of rotation-key shares per message (:func:`rotation_chunks`).
        rotation_chunks: the rotation offsets of each chunk, once key generation made them.
    """

    rotation_round_bytes: int = ROTATION_ROUND_BYTES
    rotation_chunks: tuple[list[int], ...] = ()

    def keygen(self, ctx: MheContext) -> Stats:
        """Collective key generation on the fresh context ``ctx`` and the encrypted global statistics
        (two secure sums, the first riding on JOINT_KEY/RKG2): 8 rounds. Returns the revealed global
        statistics; :attr:`schema`, the model and its backend are set."""
        self.ctx = ctx
        setup = self.t.discover(
            Step.SETUP,
            Payload(
                {Field.N_PARTIES.value: self.n, Field.FINGERPRINT.value: self.fingerprint},
                {Field.CONTEXT.value: Blob(ctx, lambda: S.context_to_bytes(ctx))},
            ),
            self.n,
            self.timeouts[1],
        )
        sc = self.schema = self.check_schema(setup)
        seal_pks = self._sealing_keys(setup)
        self._public_key(setup)
        self.setup_model(sc.n_features)
        chunks = rotation_chunks(K.rotations_for(self.model, self.run.batch, ctx.params), ctx.params,
                                 self.rotation_round_bytes)
        rotations, self.rotation_chunks = chunks[0], tuple(chunks)
        ans = self._all(
            Step.JOINT_KEY,
            Payload(
                {
                    Field.ROTATIONS.value: rotations,
                    Field.EXPS.value: sc.exps,
                    Field.TOTAL_ROWS.value: sc.total_rows,
                    **({Field.SEAL_PKS.value: seal_pks} if seal_pks else {}),
                },
                {
                    Field.JOINT_PK.value: Blob(
                        ctx.public_key, lambda: S.public_key_to_bytes(ctx, ctx.public_key)
                    )
                },
            ),
        )
        self._check_key_tags(ans, "bound its share to")
        sum1 = self.secure_sum(ans, "first")
        round1 = self._relin_round1_and_rotations(ans[0], rotations)
        self.spend(Reveal.STATISTICS, 1, "the global mean")  # its decryption shares ride on RKG2
        blobs = {Field.ROUND1.value: K.share_blob(ctx, round1), Field.CTS.value: K.cts_blob(ctx, [sum1])}
        base = Payload({}, blobs)  # one payload for all (encoded once) unless key pieces ride along
        requests = {i: Payload({}, {**blobs, **pieces_for(i, ans)}) if seal_pks else base
                    for i in self.parties}
        ans = self.t.exchange(Step.RKG2, requests, self.timeouts[0])  # the sealed key pieces ride here
        relin.finalize(
            ctx,
            self.fold_answers(
                ans,
                Field.R2_SHARE.value,
                lambda b: relin.RelinRound2Share.from_bytes(ctx, b),
                relin.aggregate_round2,
                ProtocolKind.RELIN_ROUND2,
            ),
        )
        mean = unscale(self.fuse(ans, 1, len(sc.columns))[0], sc.exps, "mean")
        stats = self._variance(mean)
        self._more_rotation_keys(chunks[1:])
        self.setup_model(sc.n_features)  # the cipher backend, now that every evaluation key exists
        return stats

    def _more_rotation_keys(self, chunks: list[list[int]]) -> None:
        """ROTATION_KEYS: the rotation keys beyond the first chunk, pipelined (``len(chunks) + 2`` rounds
        for one or more chunks): in each round the lead makes the CRPs of the next chunk, the others
        their shares of the previous one, and every holder installs the chunk finished before that."""
        ctx, todo = self.ctx, list(chunks)
        crp = joint = None  # (rotations, the lead's answer) whose others' shares come next; keys to install
        while todo or crp is not None or joint is not None:
            make = todo.pop(0) if todo else None
            requests = {}
            for i in self.parties:
                p = Payload({}, {} if joint is None else {Field.ROT_KEYS.value: K.share_blob(ctx, joint)})
                if i == 0 and make is not None:
                    p.config[Field.ROTATIONS.value] = make
                elif i > 0 and crp is not None:
                    p.config[Field.ROTATIONS.value] = crp[0]
                    p.blobs[Field.LEAD_ROT_SHARE.value] = crp[1].blobs[Field.ROT_SHARE.value]
                requests[i] = p
            ans = self.t.exchange(Step.ROTATION_KEYS, requests, self.timeouts[0])
            self._check_key_tags(ans, "made rotation keys for")
            joint = None
            if crp is not None:
                joint = self._fold_rotation_shares(crp, ans)
                rotation.finalize(ctx, joint)
            crp = (make, ans[0]) if make is not None else None

    def _fold_rotation_shares(self, crp: tuple[list[int], Payload], answers: dict[int, Payload]):
        """The joint rotation keys of one chunk: the lead's share (``crp``) plus the others' (``answers``)."""
        ctx, rotations = self.ctx, crp[0]
        rot = lambda b: rotation.RotationShare.from_bytes(ctx, b, rotations)  # noqa: E731
        lead = self.take_share(0, crp[1], Field.ROT_SHARE.value, rot, ProtocolKind.ROTATION)
        return self.fold_answers(answers, Field.ROT_SHARE.value, rot, rotation.aggregate,
                                 ProtocolKind.ROTATION, lead)

    def _sealing_keys(self, setup: dict[int, Payload]) -> list[str]:
        """With ``--threshold t < N``: every holder's public sealing key (hex), in party order."""
        if self.run.key_threshold == self.n:
            return []
        keys = [setup[i].config.get(Field.SEAL_PK.value) for i in self.parties]
        for i, k in enumerate(keys):
            if not (isinstance(k, str) and len(k) == 64 and all(c in "0123456789abcdef" for c in k)):
                raise ProtocolError(f"data holder {i} sent no valid public sealing key (its rhode is older, "
                                    "or it runs without --threshold)")
        return keys

    def _public_key(self, setup: dict[int, Payload]) -> None:
        """CKG: the others' public-key shares from the lead's CRP; the joint public key installed."""
        ctx, others = self.ctx, self.parties[1:]
        decode = lambda b: public_key.PublicKeyShare.from_bytes(ctx, b)  # noqa: E731
        blob = setup[0].blobs.get(Field.PK_SHARE.value)  # the lead's share is the CRP the others need
        lead = self.take_share(0, setup[0], Field.PK_SHARE.value, decode, ProtocolKind.PUBLIC_KEY)
        ans = self.t.exchange(
            Step.CKG, dict.fromkeys(others, Payload({}, {Field.LEAD_PK_SHARE.value: blob})), self.timeouts[0]
        )
        agg = self.fold_answers(
            ans, Field.PK_SHARE.value, decode, public_key.aggregate, ProtocolKind.PUBLIC_KEY, lead
        )
        public_key.finalize(ctx, agg)

    def _relin_round1_and_rotations(self, lead: Payload, rotations: list[int]):
        """RKG1: the others' round-1 and rotation-key shares from the lead's (its CRPs); installs the
        joint rotation keys; returns the aggregated round-1 key."""
        ctx, others = self.ctx, self.parties[1:]
        r1 = lambda b: relin.RelinRound1Share.from_bytes(ctx, b)  # noqa: E731
        rot = lambda b: rotation.RotationShare.from_bytes(ctx, b, rotations)  # noqa: E731
        lead_r1 = self.take_share(0, lead, Field.R1_SHARE.value, r1, ProtocolKind.RELIN_ROUND1)
        lead_rot = self.take_share(0, lead, Field.ROT_SHARE.value, rot, ProtocolKind.ROTATION)
        request = Payload(
            {Field.ROTATIONS.value: rotations},
            {
                Field.LEAD_R1_SHARE.value: lead.blobs[Field.R1_SHARE.value],
                Field.LEAD_ROT_SHARE.value: lead.blobs[Field.ROT_SHARE.value],
            },
        )
        ans = self.t.exchange(Step.RKG1, dict.fromkeys(others, request), self.timeouts[0])
        rotation.finalize(
            ctx,
            self.fold_answers(
                ans, Field.ROT_SHARE.value, rot, rotation.aggregate, ProtocolKind.ROTATION, lead_rot
            ),
        )
        return self.fold_answers(
            ans, Field.R1_SHARE.value, r1, relin.aggregate_round1, ProtocolKind.RELIN_ROUND1, lead_r1
        )

    def _check_key_tags(self, answers: dict[int, Payload], what: str) -> None:
        for i in self.parties:
            if answers[i].config.get(Field.KEY_TAG.value) != self.ctx.key_tag:
                raise ProtocolError(f"data holder {i} {what} another joint key")

    def _variance(self, mean: np.ndarray) -> Stats:
        """EVAL_KEYS (joint evaluation keys to all; magnitudes of the centred squares), STATS (the
        second secure sum) and its DECRYPT: the global statistics."""
        ctx, sc = self.ctx, self.schema
        ans = self._all(
            Step.EVAL_KEYS,
            Payload(
                {Field.MEAN.value: [float(m) for m in mean]},
                {Field.EVAL_KEYS.value: Blob(ctx, lambda: S.eval_keys_to_bytes(ctx))},
            ),
        )
        self._check_key_tags(ans, "stored evaluation keys of")
        exps2 = [int(e) for e in np.max([ans[i].int_list(Field.EXPS.value) for i in self.parties], axis=0)]
        ans = self._all(
            Step.STATS,
            Payload(
                {
                    Field.MEAN.value: [float(m) for m in mean],
                    Field.EXPS.value: exps2,
                    Field.TOTAL_ROWS.value: sc.total_rows,
                }
            ),
        )
        second = self.decrypt([self.secure_sum(ans, "second")], Reveal.STATISTICS, len(sc.columns))[0]
        var = np.maximum(unscale(second, exps2, "variance"), 0.0)
        rows = sc.total_rows
        return Stats(tuple(sc.columns), sc.target, rows, mean * rows, (var + mean**2) * rows)

    def hello(self, ctx: MheContext, dropouts: list[dict] | None = None) -> None:
        """A resumed or prediction run on the stored keys in ``ctx``: check every holder (1 round).
        ``dropouts``: the run's recorded dropouts (run.json); those holders are not waited for, their
        rebuilders answer for them as before."""
        self.ctx = ctx
        self.dropouts = [dict(d) for d in dropouts or []]
        gone = {int(d["party"]) for d in self.dropouts}
        self.active = [i for i in self.parties if i not in gone]
        p = Payload({Field.FINGERPRINT.value: self.fingerprint})
        if not self.t.keeps_public_keys:
            p.blobs[Field.CONTEXT.value] = Blob(ctx, lambda: S.context_to_bytes(ctx))
            p.blobs[Field.EVAL_KEYS.value] = Blob(ctx, lambda: S.eval_keys_to_bytes(ctx))
        answers = self.t.discover(Step.HELLO, p, self.n, self.timeouts[1], expected=self.active)
        for i, a in answers.items():
            if a.config.get(Field.KEY_TAG.value) != ctx.key_tag:
                raise ProtocolError(
                    f"data holder {i} holds a secret share of another joint key; it must use "
                    "the storage of this federation's key generation"
                )

    def check_schema(self, setup: dict[int, Payload]) -> Schema:
        """Every holder must publish the same columns; the public magnitude bounds are combined."""
        ref = setup[0]
        for i in self.parties[1:]:
            for key in (Field.COLUMNS, Field.TARGET, Field.FEATURES):
                if setup[i].config.get(key.value) != ref.config.get(key.value):
                    raise DataError(
                        f"data holder {i} has {key.value} {setup[i].config.get(key.value)!r} but "
                        f"data holder 0 has {ref.config.get(key.value)!r}; every holder needs the "
                        "same columns"
                    )
        exps = np.max([setup[i].int_list(Field.EXPS.value) for i in self.parties], axis=0)
        return Schema(
            list(ref.config[Field.COLUMNS.value]),
            ref.get(Field.TARGET.value, str),
            list(ref.config[Field.FEATURES.value]),
            [int(e) for e in exps],
            float(sum(setup[i].get(Field.COUNT.value, float) for i in self.parties)),
        )

    def secure_sum(self, answers: dict[int, Payload], what: str):
        """The sum of every holder's encrypted statistics vector (blob STATS)."""
        ev = Evaluator(self.ctx)
        cts = [
            self._parse(
                i,
                f"{what} statistics",
                lambda p: K.take_cts(self.ctx, p, Field.STATS.value, count=1)[0],
                answers[i],
            )
            for i in self.parties
        ]
        return reduce(ev.add, cts)
