"""A data holder's side of every protocol step, written once for every engine.

:class:`HolderSide` answers each :class:`~rhode.federated.schema.Step` from its
:class:`~rhode.federated.state.HolderState` (in memory in-process, a node directory on Flower) with
its secret share: key-generation shares, its encrypted pre-scaled statistics, refresh, decryption and
key-switch shares, and jobs on the encrypted global model (local training, the encrypted loss) that
pause for collective refreshes (:mod:`rhode.federated.job`). The secret share is read from the state
for the step that needs it and never leaves this module except inside a share.

See :mod:`rhode.federated.schema` for what each step carries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import reduce

import numpy as np

from rhode.errors import ProtocolError, SerializationError
from rhode.federated import codec as K
from rhode.federated import threshold
from rhode.federated.dataprep import magnitude_exponents, stat_values, stats_from_json, stats_vector
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, JobKind, Status, Step
from rhode.federated.state import HolderState
from rhode.mhe import Party
from rhode.mhe import serial as S
from rhode.mhe.protocols import decryption, key_switch, public_key, refresh, relin, rotation


class HolderSide:
    """One data holder: ``handle(step, payload)`` runs that step on its state."""

    def __init__(self, state: HolderState) -> None:
        self.state = state
        self._steps: dict[Step, Callable[[Payload], Payload]] = {
            Step.SETUP: self.setup,
            Step.CKG: self.ckg,
            Step.JOINT_KEY: self.joint_key,
            Step.RKG1: self.rkg1,
            Step.RKG2: self.rkg2,
            Step.EVAL_KEYS: self.eval_keys,
            Step.STATS: self.stats,
            Step.ROTATION_KEYS: self.rotation_keys,
            Step.HELLO: self.hello,
            Step.REFRESH: self.refresh,
            Step.DECRYPT: self.decrypt,
            Step.KEY_SWITCH: self.key_switch,
            Step.RECOVER: self.recover,
            Step.ADOPT: self.adopt,
            Step.TRAIN: self.train,
            Step.RESUME: self.resume,
        }

    @property
    def index(self) -> int:
        return self.state.index

    def handle(self, step: Step | str, p: Payload) -> Payload:
        """Answer one step (a :class:`ProtocolError` for an unknown one)."""
        try:
            fn = self._steps[Step(step)]
        except ValueError:
            raise ProtocolError(f"unknown step {step!r}") from None
        return fn(p)

    def _answer(self, config: dict | None = None, blobs: dict | None = None) -> Payload:
        return Payload({Field.PARTY.value: self.index, **(config or {})}, blobs or {})

    def _check_lead(self, want_lead: bool, step: Step) -> None:
        if (self.index == 0) != want_lead:
            raise ProtocolError(
                f"'{step.value}' is for {'the lead' if want_lead else 'non-lead data holders'}"
                f", but this is data holder {self.index}"
            )

    def _check_fingerprint(self, p: Payload) -> None:
        if p.get(Field.FINGERPRINT.value, str) != self.state.fingerprint:
            raise ProtocolError("this data holder's run configuration differs from the aggregator's")

    # -- key generation --------------------------------------------------------------------------------
    def setup(self, p: Payload) -> Payload:
        """A new key epoch: store the public context; the lead samples its secret share."""
        n = p.get(Field.N_PARTIES.value, int)
        if not 0 <= self.index < n:
            raise ProtocolError(
                f"node config party-index={self.index}, but the federation has {n} data "
                f"holders (indices 0 to {n - 1})"
            )
        self._check_fingerprint(p)
        train = self.state.train_series()
        ctx = self.state.new_epoch(p)
        if ctx.public_key is not None:
            raise ProtocolError("setup must carry a context without a joint public key")
        out = self._answer(
            {
                Field.COLUMNS.value: list(train.stat_columns),
                Field.TARGET.value: train.target_name,
                Field.FEATURES.value: list(train.feature_names),
                Field.COUNT.value: float(train.n_rows),
                Field.EXPS.value: [int(e) for e in magnitude_exponents(stat_values(train))],
            }
        )
        if self.index == 0:
            party = Party.create(ctx, 0)
            self.state.save_party(party)
            out.blobs[Field.PK_SHARE.value] = K.share_blob(ctx, public_key.gen_share(party))
        if self.state.run.key_threshold < n:
            out.config[Field.SEAL_PK.value] = threshold.sealing_public_key(self.state)
        return out

    def ckg(self, p: Payload) -> Payload:
        """Non-leads: a secret share from the lead's CRP, and its public-key share."""
        self._check_lead(False, Step.CKG)
        ctx = self.state.context()
        crp = p.take(Field.LEAD_PK_SHARE.value, lambda b: public_key.PublicKeyCrp.from_bytes(ctx, b))
        party = Party.create(ctx, self.index, public_key.PublicKeyCrp.of(crp))
        self.state.save_party(party)
        return self._answer(blobs={Field.PK_SHARE.value: K.share_blob(ctx, public_key.gen_share(party))})

    def joint_key(self, p: Payload) -> Payload:
        """Bind the share to the joint key; the lead's round-1 and rotation shares; the first
        statistics sum (pre-scaled column sums)."""
        ctx = self.state.context()
        joint = p.take(Field.JOINT_PK.value, lambda b: S.public_key_from_bytes(ctx, b))
        if ctx.public_key is not None and ctx.key_tag != joint.GetKeyTag():
            raise ProtocolError("this data holder already has another joint public key; start a new run")
        party = self.state.party()
        ctx.public_key = joint
        party.bind_to_joint_key()
        self.state.save_party(party)
        self.state.save_context()
        train = self.state.train_series()
        v = stats_vector(
            stat_values(train), p.int_list(Field.EXPS.value), p.get(Field.TOTAL_ROWS.value, float)
        )
        out = self._answer(
            {Field.KEY_TAG.value: ctx.key_tag}, {Field.STATS.value: K.cts_blob(ctx, [ctx.encrypt(v)])}
        )
        if self.index == 0:
            rotations = p.int_list(Field.ROTATIONS.value)
            out.blobs[Field.R1_SHARE.value] = K.share_blob(ctx, relin.gen_crp(party))
            out.blobs[Field.ROT_SHARE.value] = K.share_blob(ctx, rotation.gen_crp(party, rotations))
        if Field.SEAL_PKS.value in p.config:
            out.blobs.update(threshold.deal_pieces(self.state, p))
        return out

    def rkg1(self, p: Payload) -> Payload:
        """Non-leads: relinearization round-1 and rotation-key shares from the lead's."""
        self._check_lead(False, Step.RKG1)
        ctx, party = self.state.context(), self.state.party()
        rotations = p.int_list(Field.ROTATIONS.value)
        r1_crp = p.take(Field.LEAD_R1_SHARE.value, lambda b: relin.RelinCrp.from_bytes(ctx, b))
        rot_crp = p.take(
            Field.LEAD_ROT_SHARE.value, lambda b: rotation.RotationCrp.from_bytes(ctx, b, rotations)
        )
        return self._answer(
            blobs={
                Field.R1_SHARE.value: K.share_blob(ctx, relin.gen_round1(party, relin.RelinCrp.of(r1_crp))),
                Field.ROT_SHARE.value: K.share_blob(
                    ctx, rotation.gen_share(party, rotation.RotationCrp.of(rot_crp))
                ),
            }
        )

    def rkg2(self, p: Payload) -> Payload:
        """Relinearization round-2 share; decryption shares of the first statistics sum."""
        ctx, party = self.state.context(), self.state.party()
        round1 = p.take(Field.ROUND1.value, lambda b: relin.RelinRound1Share.from_bytes(ctx, b))
        kept = threshold.keep_pieces(self.state, p)
        if kept and kept != self.state.run.n_parties - 1:
            raise ProtocolError(
                f"data holder {self.index} got {kept} key pieces, expected one from each other")
        out = self.decrypt(p)
        out.blobs[Field.R2_SHARE.value] = K.share_blob(ctx, relin.gen_round2(party, round1))
        return out

    def eval_keys(self, p: Payload) -> Payload:
        """Install the joint evaluation keys; the magnitudes of the centred squares."""
        ctx = self.state.install_eval_keys(p)
        values = stat_values(self.state.train_series())
        centred = (values - _mean(p, values.shape[1])) ** 2
        return self._answer(
            {
                Field.KEY_TAG.value: ctx.key_tag,
                Field.EXPS.value: [int(e) for e in magnitude_exponents(centred)],
            }
        )

    def stats(self, p: Payload) -> Payload:
        """The second statistics sum: centred squares around the revealed global mean."""
        ctx = self.state.context()
        values = stat_values(self.state.train_series())
        centred = (values - _mean(p, values.shape[1])) ** 2
        v = stats_vector(centred, p.int_list(Field.EXPS.value), p.get(Field.TOTAL_ROWS.value, float))
        return self._answer(blobs={Field.STATS.value: K.cts_blob(ctx, [ctx.encrypt(v)])})

    def rotation_keys(self, p: Payload) -> Payload:
        """One round of the pipelined rotation-key chunks: install the joint keys of blob ROT_KEYS (if
        any); the lead makes its share (the CRPs) of ``rotations``, a non-lead its share of the lead's
        in LEAD_ROT_SHARE (if the request names rotations)."""
        ctx = self.state.context()
        if Field.ROT_KEYS.value in p.blobs:
            self.state.install_rotation_keys(
                p.take(Field.ROT_KEYS.value, lambda b: rotation.RotationShare.from_bytes(ctx, b)))
        out = self._answer({Field.KEY_TAG.value: ctx.key_tag})
        if Field.ROTATIONS.value not in p.config:
            return out
        party, rotations = self.state.party(), p.int_list(Field.ROTATIONS.value)
        if self.index == 0:
            share = rotation.gen_crp(party, rotations)
        else:
            crp = p.take(
                Field.LEAD_ROT_SHARE.value, lambda b: rotation.RotationCrp.from_bytes(ctx, b, rotations))
            share = rotation.gen_share(party, rotation.RotationCrp.of(crp))
        out.blobs[Field.ROT_SHARE.value] = K.share_blob(ctx, share)
        return out

    def hello(self, p: Payload) -> Payload:
        """A resumed or prediction run: party index and joint key tag (public keys installed if the
        aggregator sends them: holders that keep none)."""
        self._check_fingerprint(p)
        ctx = self.state.attach(p)
        self.state.party()  # the secret share must be there and belong to the joint key
        return self._answer({Field.KEY_TAG.value: ctx.key_tag})

    # -- shares on ciphertexts -------------------------------------------------------------------------
    def refresh(self, p: Payload) -> Payload:
        """Refresh (IntMPBoot) shares for every ciphertext of the request."""
        ctx = self.state.context()
        request = p.take(Field.REQUEST.value, lambda b: refresh.RefreshRequest.from_bytes(ctx, b))
        share = self._fold(p, lambda party: refresh.gen_share(party, request), refresh.aggregate)
        self.state.last_refresh = (p.get(Field.REFRESH_TAG.value, str), list(request.crps))
        return self._answer(
            {Field.COUNT.value: len(share.pairs)}, {Field.SHARES.value: K.share_blob(ctx, share)}
        )

    def decrypt(self, p: Payload) -> Payload:
        """Flooded threshold-decryption shares of the request's ciphertexts."""
        ctx = self.state.context()
        cts = K.take_cts(ctx, p, Field.CTS.value)
        share = self._fold(p, lambda party: decryption.gen_share(party, cts, flood=True),
                           decryption.aggregate)
        return self._answer(
            {Field.COUNT.value: len(share.cts)}, {Field.SHARES.value: K.share_blob(ctx, share)}
        )

    def key_switch(self, p: Payload) -> Payload:
        """Key-switch shares of the request's ciphertexts towards the querier's public key."""
        ctx = self.state.context()
        qpk = p.take(
            Field.QUERIER_PK.value, lambda b: S.public_key_from_bytes(ctx, b, S.Kind.QUERIER_PUBLIC_KEY)
        )
        cts = K.take_cts(ctx, p, Field.CTS.value)
        share = self._fold(p, lambda party: key_switch.gen_share(party, cts, qpk), key_switch.aggregate)
        return self._answer(
            {Field.COUNT.value: len(share.cts)}, {Field.SHARES.value: K.share_blob(ctx, share)}
        )

    def _fold(self, p: Payload, gen, aggregate):
        """This holder's share, plus those of the dropped holders the request's STAND_INS name it for
        (their sum: one answer). Only the aggregator's record decides: a holder that adopted a share
        answers for it only when told to, so a holder that came back is never counted twice."""
        ctx = self.state.context()
        parties = [self.state.party(), *self.state.adopted(stand_ins_for(p, self.index))]
        return reduce(lambda a, b: aggregate(ctx, a, b), (gen(party) for party in parties))

    # -- t-out-of-N recovery -----------------------------------------------------------------------------
    def recover(self, p: Payload) -> Payload:
        """A helper: its piece of the dropped holder's share, sealed for the rebuilding holder."""
        return self._answer(blobs={Field.PIECE.value: threshold.reseal_piece(self.state, p)})

    def adopt(self, p: Payload) -> Payload:
        """The rebuilding holder: rebuild the dropped holder's share and answer for it from now on."""
        threshold.adopt(self.state, p)
        return self._answer({Field.KEY_TAG.value: self.state.context().key_tag})

    # -- jobs on the encrypted model -------------------------------------------------------------------------
    def train(self, p: Payload) -> Payload:
        """Start a job (local training or the loss) on the encrypted global model."""
        stats_from_json(p.get(Field.GLOBAL_STATS.value, str))
        JobKind(p.get(Field.KIND.value, str))
        return self._relay(self.state.jobs().start(p))

    def resume(self, p: Payload) -> Payload:
        """Hand the paused job its refreshed ciphertexts: the request holds their c0 parts, their c1 parts
        are the CRPs of the REFRESH round it names (:func:`refresh.rejoin`)."""
        ctx, tag = self.state.context(), p.get(Field.REFRESH_TAG.value, str)
        last = self.state.last_refresh
        if last is None or last[0] != tag:
            raise ProtocolError(f"data holder {self.index} was asked to resume after refresh round {tag!r}, "
                                "which is not the last one it answered; the iteration must restart")
        offset, count = p.get(Field.OFFSET.value, int), p.get(Field.COUNT.value, int)
        if offset < 0 or offset + count > len(last[1]):
            raise ProtocolError(f"refresh round {tag!r} has {len(last[1])} ciphertexts, not "
                                f"{count} from position {offset}")
        c0s = K.take_cts(ctx, p, Field.CTS.value, S.Kind.REFRESHED_C0, count=count)
        fresh = [S.native(ctx, ct) for ct in refresh.rejoin(c0s, last[1][offset : offset + count])]
        full = Payload(p.config, {Field.CTS.value: K.cts_blob(ctx, fresh)})
        return self._relay(self.state.jobs().resume(full))

    def _relay(self, r: Payload) -> Payload:
        if r.error:
            raise ProtocolError(f"data holder {self.index}'s job failed: {r.error}")
        status = r.get(Field.STATUS.value, str)
        if status not in (Status.PENDING.value, Status.DONE.value):
            raise ProtocolError(f"data holder {self.index}'s job answered {status!r}")
        r.config[Field.PARTY.value] = self.index
        return r


def stand_ins_for(p: Payload, index: int) -> list[int]:
    """The dropped holders the request's STAND_INS field names holder ``index`` to answer for."""
    raw = p.config.get(Field.STAND_INS.value)
    if raw is None:
        return []
    try:
        table = json.loads(raw)
        return sorted(int(d) for d in table.get(str(index), []))
    except (TypeError, ValueError, AttributeError):
        raise SerializationError(f"message has a malformed '{Field.STAND_INS.value}' field") from None


def _mean(p: Payload, c: int) -> np.ndarray:
    raw = p.config.get(Field.MEAN.value)
    mean = np.asarray(raw, dtype=float) if isinstance(raw, list) else None
    if mean is None or mean.shape != (c,) or not np.all(np.isfinite(mean)):
        raise SerializationError("message has no valid 'mean' field")
    return mean
