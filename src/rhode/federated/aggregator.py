"""The aggregator's side of every protocol, written once for every engine. It holds no secret.

:class:`Aggregator` drives each step over a :class:`~rhode.federated.transport.Transport` and combines
the data holders' answers: collective key generation with the encrypted global statistics, a global
iteration (the holders' jobs with every pending ciphertext of every holder refreshed in one round,
FedAvg, the encrypted loss), prediction for a querier (key switch), and the threshold decryption of a
result. Everything it computes is secret-free: CRPs and scale adjustment for refreshes, sums of
shares (:mod:`rhode.mhe.protocols`), FedAvg of the encrypted local models, the evaluation of the
encrypted model on a querier's encrypted inputs. What to keep (checkpoints, run.json, the report) is
the caller's policy (:mod:`rhode.federated.run`, :mod:`rhode.federated.flower.server`).

Rounds (N data holders, R refresh points per job)::

    key generation  SETUP, CKG, JOINT_KEY, RKG1, RKG2, EVAL_KEYS, STATS, DECRYPT (8 rounds; the two
                    secure sums of the global statistics ride on JOINT_KEY/RKG2 and EVAL_KEYS/STATS/DECRYPT;
                    with --threshold the sealed key pieces on JOINT_KEY/RKG2), + ROTATION_KEYS (rings
                    whose rotation keys exceed one message: chunks + 1 rounds)
    a dropout       RECOVER + ADOPT per share to re-home (--threshold), then the iteration again
    per iteration   TRAIN, then per refresh point REFRESH + RESUME (the c0 parts only: c1 is the
                    REFRESH request's CRP, which every holder has); FedAvg; REFRESH (the new model, and
                    with momentum every holder's velocity, to level 0); the next iteration's TRAIN,
                    driven until every holder's answer carried its part of the new model's loss (its
                    first forward pass), then left paused; DECRYPT (the loss). After the last
                    iteration a LOSS job instead: TRAIN, R' x (REFRESH + RESUME), DECRYPT

Momentum: every holder's encrypted velocity is per-holder state the aggregator keeps between
iterations (:attr:`Aggregator.velocities`, never decrypted, never averaged): it arrives with the
holder's local model (blob VELOCITY) and goes back to that holder only, with its next TRAIN request.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from rhode.data import Stats
from rhode.errors import CheckpointError, HolderUnavailableError, ProtocolError
from rhode.federated import codec as K
from rhode.federated.budget import Reveal
from rhode.federated.dataprep import stats_to_json
from rhode.federated.dropout import recover
from rhode.federated.keygen import KeyGeneration
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, JobKind, Status, Step
from rhode.mhe import serial as S
from rhode.mhe.protocols import refresh
from rhode.nn.fedavg import fedavg
from rhode.tensor import codec as TC

#: The global loss is revealed as 16 times the loss, 8/(n b) times the sum of the n b squared errors:
#: 4 bits more precise after the flooding, and still within the noise measured for the flooding
#: (a sum of 16 products, :mod:`rhode.mhe.flooding`), which the revealed ciphertext's must not exceed.
LOSS_REVEAL_FACTOR = 16.0


@dataclass
class IterationRecord:
    """What one global iteration did: its loss and its costs.

    Attributes:
        seconds_by_step: wall seconds spent in the rounds of each step (``train.local`` and
            ``train.resume``: the holders' jobs computing; ``query.refresh``: refresh rounds; ...).
        seconds_loss: the part of ``seconds`` spent on the encrypted loss (the next iteration's TRAIN
            job until every holder sent its part, or the LOSS job, and the decryption).
        seconds_aggregator: the aggregator's own computation between rounds (FedAvg, combining shares).
    """

    iteration: int
    loss: float | None
    seconds: float
    rounds: int
    refresh_rounds: int
    refreshed_ciphertexts: int
    weights: list[float]
    bytes_sent_per_party: dict[str, int] = field(default_factory=dict)
    bytes_received_per_party: dict[str, int] = field(default_factory=dict)
    seconds_by_step: dict[str, float] = field(default_factory=dict)
    seconds_loss: float = 0.0
    seconds_aggregator: float = 0.0
    holders: list[int] = field(default_factory=list)  # who trained it (all but the dropped holders)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Carried:
    """A TRAIN job started ahead by :meth:`Aggregator.loss`: iteration, the model it started from, its
    id, the holders' last answers (not yet collected) and those already done."""

    iteration: int
    params: dict
    job: str
    answers: dict[int, Payload]
    done: dict[int, Payload]


class Aggregator(KeyGeneration):
    """Drives a federation: key generation (:class:`KeyGeneration`), global iterations, prediction.

    Args: see :class:`~rhode.federated.rounds.Rounds`.

    Attributes:
        velocities: party -> its encrypted velocity (parameter name -> tensor) after the last
            iteration; empty with momentum 0. The caller checkpoints it and restores it on resume.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.velocities: dict[int, dict] = {}
        self._carried: _Carried | None = None  # the next iteration's TRAIN job, paused (see :meth:`loss`)

    def encrypt_model(self, params: dict[str, np.ndarray]) -> dict:
        """The initial model (weights from the shared seed) encrypted under the joint key."""
        return self.backend.encrypt_params(params)

    def checkpoint_blobs(self, params: dict) -> dict[str, list[bytes]]:
        """The training state a checkpoint holds (:attr:`Checkpoint.model`), all encrypted: the global
        model ``params`` and, with momentum, every holder's velocity (:func:`codec.model_to_checkpoint`)."""
        return K.model_to_checkpoint(self.ctx, self.backend, self.model, params, self.velocities)

    def restore(self, blobs: dict[str, list[bytes]]) -> dict:
        """Inverse of :meth:`checkpoint_blobs` on resume: returns the global model and puts every holder's
        velocity back in :attr:`velocities` (a checkpoint of a run with momentum must hold them)."""
        velocities = K.velocities_from_checkpoint(self.ctx, self.backend, self.model, blobs)
        if self.run.momentum > 0 and sorted(velocities) != self.active:
            raise CheckpointError(
                f"the checkpoint holds the velocities of data holders {sorted(velocities)}, a run with "
                f"momentum needs those of every active holder {self.active}; start a new run")
        params = K.model_from_checkpoint(self.ctx, self.backend, self.model, blobs)
        self.velocities = velocities
        return params

    def iteration(
        self, it: int, params: dict, stats: Stats, loss: bool = True
    ) -> tuple[dict, IterationRecord]:
        """:meth:`one_iteration`; under a t-out-of-N key a holder that drops out is recovered
        (:func:`rhode.federated.dropout.recover`) and the iteration restarts without it."""
        while True:
            try:
                return self.one_iteration(it, params, stats, loss)
            except HolderUnavailableError as exc:
                self._carried = None
                recover(self, exc, it)

    def one_iteration(
        self, it: int, params: dict, stats: Stats, loss: bool = True
    ) -> tuple[dict, IterationRecord]:
        """One global iteration on the encrypted global model ``params``: every holder's local training
        (its pending ciphertexts refreshed together with every other holder's), FedAvg weighted by the
        holders' window counts, the new model refreshed to level 0, and (``loss``) its encrypted
        training loss, of which only the global value is decrypted (:meth:`loss`: before the last
        iteration it starts the next iteration's TRAIN job, which this method then continues if called
        with that model). Returns (new model, record). With
        momentum every holder's velocity is taken from and left in :attr:`velocities` (refreshed to
        level 0 with the new model; reset at ``it`` = 0)."""
        t0, r0 = time.monotonic(), len(self.t.rounds)
        rr0, rc0 = self.refresh_rounds, self.refreshed_ciphertexts
        self.t.tag = f"iteration-{it + 1}"
        if it == 0:
            self.velocities = {}  # a training starts from zero velocities
        carried, self._carried = self._carried, None
        if carried is not None and carried.iteration == it and carried.params is params:
            done = self._drive(carried.job, carried.answers, carried.done)  # started by the last loss
        else:
            done = self.run_jobs(JobKind.TRAIN, it, params, stats)
        shapes = self.model.param_shapes
        models = [
            {
                name: self.backend.import_param([ct], shape)
                for (name, shape), ct in zip(
                    shapes.items(), self._import(i, done[i], len(shapes)), strict=True
                )
            }
            for i in self.active
        ]
        weights = [float(done[i].get(Field.WINDOWS.value, int)) for i in self.active]
        self._forms_used = self._union_forms(done)
        velocities = {
            i: self._velocity(i, done[i]) for i in self.active if Field.VELOCITY.value in done[i].blobs
        }
        if velocities and len(velocities) != len(self.active):
            raise ProtocolError(f"only data holders {sorted(velocities)} sent their velocity")
        new = fedavg(self.backend, models, weights)
        # the next iteration (and a prediction) start with every level: fewer refresh points; the
        # velocities join the same round (no extra round, and none of the holders' jobs pauses for them)
        self.backend.refresh([*new.values(), *(v for vel in velocities.values() for v in vel.values())])
        self.velocities = velocities
        t_loss = time.monotonic()
        value = self.loss(it, new, stats, ahead=it + 1 < self.run.global_iterations) if loss else None
        rec = self._record(it, value, (t0, t_loss), (r0, rr0, rc0), weights)
        return new, rec

    def _record(self, it: int, value, times: tuple[float, float], marks: tuple[int, int, int],
                weights: list[float]) -> IterationRecord:
        (t0, t_loss), (r0, rr0, rc0) = times, marks
        now = time.monotonic()
        rounds = self.t.rounds[r0:]
        by_step: dict[str, float] = {}
        for r in rounds:
            by_step[r.step] = by_step.get(r.step, 0.0) + r.seconds
        return IterationRecord(
            it + 1, value, now - t0, len(rounds), self.refresh_rounds - rr0, self.refreshed_ciphertexts - rc0,
            weights, _per_party(rounds, "sent"), _per_party(rounds, "received"), by_step, now - t_loss,
            max(0.0, now - t0 - sum(by_step.values())), list(self.active))

    def loss(self, it: int, params: dict, stats: Stats, ahead: bool = False) -> float:
        """Training loss 1/(2n) sum (yhat - y)^2 of the encrypted model ``params`` after iteration ``it``,
        over every holder's batch of the next iteration's first local step (:func:`work.loss_indices`):
        each holder computes its scaled encrypted sum, only the global sum is decrypted. It is revealed
        as :data:`LOSS_REVEAL_FACTOR` times the loss (its flooding error divided by that on decoding).

        ``ahead``: the next iteration's TRAIN job computes it in its first forward pass; the job is driven
        until every holder has sent its part, then left paused for :meth:`one_iteration` of ``it + 1`` on
        ``params`` (no rounds of its own but the decryption). Otherwise a LOSS job (the last iteration)."""
        scale = LOSS_REVEAL_FACTOR / (2 * len(self.active) * self.run.batch)
        if not ahead:
            done = self.run_jobs(JobKind.LOSS, it, params, stats, scale)
            return self._reveal_loss({i: self._import(i, done[i], 1) for i in self.active})
        job, answers = self._start(JobKind.TRAIN, it + 1, params, stats, loss_scale=scale)
        parts: dict[int, list] = {}
        done: dict[int, Payload] = {}

        def all_parts_in(answers: dict[int, Payload]) -> bool:
            for i, p in answers.items():
                if Field.LOSS.value in p.blobs:
                    parts[i] = self._parse(i, "loss", lambda q: K.take_cts(self.ctx, q, Field.LOSS.value,
                                                                            count=1), p)
            if len(parts) == len(self.active):
                self._carried = _Carried(it + 1, params, job, answers, done)
            return len(parts) == len(self.active)

        if self._drive(job, answers, done, until=all_parts_in) is not None:
            raise ProtocolError(f"data holder(s) {sorted(set(self.active) - set(parts))} finished "
                                "their job without the loss")
        return self._reveal_loss(parts)

    def _reveal_loss(self, parts: dict[int, list]) -> float:
        shape = (self.model.config.output_size,)
        total = reduce(self.backend.add, [self.backend.import_param(parts[i], shape) for i in self.active])
        self.backend.prepare_export([total])
        revealed = self.backend.decode(total, self.decrypt(TC.ciphertexts(total), Reveal.LOSS))
        return float(np.sum(revealed)) / LOSS_REVEAL_FACTOR

    def run_jobs(
        self, kind: JobKind, it: int, params: dict, stats: Stats, scale: float = 0.0
    ) -> dict[int, Payload]:
        """Every holder's job on ``params`` until all are done; all pending ciphertexts of one pause
        of every holder are refreshed in one round. Returns party -> final answer."""
        job, answers = self._start(kind, it, params, stats, scale)
        return self._drive(job, answers, {})

    def _start(self, kind: JobKind, it: int, params: dict, stats: Stats, scale: float = 0.0,
               loss_scale: float = 0.0) -> tuple[str, dict[int, Payload]]:
        """The TRAIN round of a new job (``loss_scale``: a training job that also computes the loss of
        ``params``). Returns (job id, the holders' first answers)."""
        for name, forms in self._forms_used.items():  # computed once here for every holder
            self.backend.add_forms(params[name], forms)
        job = f"{self.ctx.key_tag[:12]}-it{it}-{kind.value}-{time.time_ns()}"
        config = {Field.JOB.value: job, Field.ITERATION.value: it, Field.KIND.value: kind.value,
                  Field.GLOBAL_STATS.value: stats_to_json(stats), Field.SCALE.value: scale}
        if loss_scale:
            config[Field.LOSS_SCALE.value] = loss_scale
        request = Payload(
            config,
            {Field.MODEL.value: K.model_blob(self.ctx, self.backend, self.model, params, forms=True)},
        )
        return job, self.t.exchange(Step.TRAIN, self._requests(kind, request), self.timeouts[0])

    def _drive(self, job: str, answers: dict[int, Payload], done: dict[int, Payload],
               until=None) -> dict[int, Payload] | None:
        """Refresh and resume the holders' paused jobs until every one is done (``done``: those already).
        ``until(answers)``: checked on every round's answers before they are collected; True leaves the
        jobs paused on them and returns None."""
        while True:
            if until is not None and until(answers):
                return None
            pending = self._collect(answers, done)
            if not pending:
                self._count_operations(done)
                return done
            answers = self.t.exchange(Step.RESUME, self._resumes(job, pending), self.timeouts[0])

    def _resumes(self, job: str, pending: dict[int, list]) -> dict[int, Payload]:
        """Refresh every holder's pending ciphertexts in one round; party -> its RESUME request, which
        carries only the c0 parts: the c1 parts are that round's CRPs, which every holder received."""
        order = sorted(pending)
        fresh = refresh.strip(self.refresh_round([ct for i in order for ct in pending[i]]))
        requests, pos = {}, 0
        for i in order:
            k = len(pending[i])
            requests[i] = Payload(
                {Field.JOB.value: job, Field.REFRESH_TAG.value: self.refresh_tag, Field.OFFSET.value: pos,
                 Field.COUNT.value: k},
                {Field.CTS.value: K.cts_blob(self.ctx, fresh[pos : pos + k], S.Kind.REFRESHED_C0)},
            )
            pos += k
        return requests

    def _requests(self, kind: JobKind, request: Payload) -> dict[int, Payload]:
        """party -> its TRAIN request: the shared one, plus (local training with momentum) its own
        velocity. The model blob is encoded once for all of them."""
        if kind is not JobKind.TRAIN or not self.velocities:
            return dict.fromkeys(self.active, request)
        if sorted(self.velocities) != self.active:
            raise ProtocolError(f"velocities of data holders {sorted(self.velocities)} only; every holder "
                                "needs its own (restore them all from the checkpoint)")
        return {
            i: Payload(
                request.config,
                {**request.blobs, Field.VELOCITY.value: K.velocity_blob(self.ctx, self.model, vel)},
            )
            for i, vel in sorted(self.velocities.items())
        }

    def _velocity(self, party: int, p: Payload) -> dict:
        def take(q: Payload) -> dict:
            return K.take_model(self.ctx, self.backend, self.model, q, Field.VELOCITY.value)

        return self._parse(party, "velocity", take, p)

    def _collect(self, answers: dict[int, Payload], done: dict[int, Payload]) -> dict[int, list]:
        pending: dict[int, list] = {}
        for i, p in answers.items():
            status = p.get(Field.STATUS.value, str)
            if status == Status.DONE.value:
                done[i] = p
            elif status == Status.PENDING.value:
                pending[i] = self._parse(
                    i,
                    "pending-ciphertext",
                    lambda q: K.take_cts(self.ctx, q, Field.CTS.value, count=q.get(Field.COUNT.value, int)),
                    p,
                )
            else:
                raise ProtocolError(f"data holder {i} answered its job with status {status!r}")
        return pending

    def _import(self, party: int, p: Payload, count: int) -> list:
        return self._parse(
            party, "local model", lambda q: K.take_cts(self.ctx, q, Field.MODEL.value, count=count), p
        )

    def _count_operations(self, done: dict[int, Payload]) -> None:
        for p in done.values():
            for k, v in _json_field(p, Field.OPERATIONS, "operation counts").items():
                self.holder_operations[k] = self.holder_operations.get(k, 0) + int(v)

    @staticmethod
    def _union_forms(done: dict[int, Payload]) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {}
        for p in done.values():
            for name, forms in _json_field(p, Field.FORMS_USED, "list of forms").items():
                out.setdefault(name, set()).update(f for f in forms if f != "nat")
        return {k: sorted(v) for k, v in out.items()}

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, params: dict, xs: list, querier_pk) -> tuple[object, list]:
        """Evaluate the encrypted model on a querier's encrypted inputs ``xs`` (one batch tensor per
        timestep) and switch the result to ``querier_pk``. Returns (result tensor, switched ciphertexts)."""
        yhat = self.model.predict(self.backend, params, xs)
        self.backend.prepare_export([yhat])
        return yhat, self.key_switch(TC.ciphertexts(yhat), querier_pk)


def _per_party(rounds, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rounds:
        for party, b in getattr(r, key).items():
            out[str(party)] = out.get(str(party), 0) + b
    return out


def _json_field(p: Payload, field: Field, what: str) -> dict:
    """A JSON object a data holder sent in config field ``field``."""
    try:
        value = json.loads(p.get(field.value, str))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProtocolError(f"a data holder sent a malformed {what}")
    return value
