"""The aggregator's collective operations over a transport: the rounds every protocol is made of.

:class:`Rounds` sends one request to every data holder and combines the shares they answer with:
refresh (one round for any number of ciphertexts from any holders), threshold decryption and the key
switch to a querier. It holds no secret. :mod:`rhode.federated.keygen` and
:mod:`rhode.federated.aggregator` build the protocols on it.
"""

from __future__ import annotations

import json
import secrets

import numpy as np

from rhode.errors import ProtocolError, RhodeError
from rhode.federated import codec as K
from rhode.federated.budget import DecryptionLedger, Reveal
from rhode.federated.config import RunConfig, model_configs
from rhode.federated.payload import Blob, Payload
from rhode.federated.schema import Field, Step
from rhode.federated.transport import Transport
from rhode.mhe import MheContext
from rhode.mhe import serial as S
from rhode.mhe.protocols import decryption, key_switch, refresh
from rhode.mhe.protocols.base import Accumulator, ProtocolKind, payload_size
from rhode.nn.model import RecurrentModel
from rhode.tensor import codec as TC


class Rounds:
    """Drives a federation of ``n_parties`` data holders over ``transport``.

    Args:
        run: the run configuration every data holder has too.
        fingerprint: what the data holders' configuration must match.
        transport: how to reach the data holders.
        round_timeout, connect_timeout: seconds to wait for one round's answers / for every holder
            to connect.
        margin: the aggregator's cipher backend's ``eager_margin``.

    Every ciphertext revealed (decrypted or switched to a querier) is counted in :attr:`ledger`
    before its shares are requested: the run policy sets a stored ledger; without one an in-memory
    ledger against the context's ``decryption_budget`` is made on first use.
    """

    def __init__(
        self,
        run: RunConfig,
        fingerprint: str,
        transport: Transport,
        *,
        round_timeout: float = 600.0,
        connect_timeout: float = 120.0,
        margin: int | None = None,
    ) -> None:
        self.run = run
        self.fingerprint = fingerprint
        self.t = transport
        self.n = run.n_parties
        self.timeouts = (round_timeout, connect_timeout)
        self.margin = margin
        self.ctx: MheContext | None = None
        self.schema = None  # the data holders' schema (keygen.Schema), once key generation ran
        self.model: RecurrentModel | None = None
        self.backend = None
        self.refresh_rounds = 0
        self.refresh_tag = ""  # names the last refresh round (a RESUME after it names it too)
        self.refreshed_ciphertexts = 0
        self._forms_used: dict[str, list[str]] = {}
        self.holder_operations: dict[str, int] = {}
        self.ledger: DecryptionLedger | None = None
        self.active: list[int] = list(range(self.n))  # who answers rounds: all but the dropped holders
        self.dropouts: list[dict] = []  # {"party", "iteration", "rebuilder"} (rhode.federated.dropout)
        self.on_dropout = None  # called with :attr:`dropouts` after each recovery (the run policy's)

    @property
    def parties(self) -> list[int]:
        return list(range(self.n))

    def _all(self, step: Step, payload: Payload) -> dict[int, Payload]:
        """One round to every active data holder; after a dropout the request names, in STAND_INS, the
        dropped holders each rebuilder answers for (its answer then holds the sum of their shares)."""
        if self.dropouts:
            table: dict[str, list[int]] = {}
            for rec in self.dropouts:
                table.setdefault(str(rec["rebuilder"]), []).append(int(rec["party"]))
            payload = Payload({**payload.config, Field.STAND_INS.value: json.dumps(table)}, payload.blobs)
        return self.t.exchange(step, dict.fromkeys(self.active, payload), self.timeouts[0])

    @staticmethod
    def _parse(party: int, what: str, fn, payload: Payload):
        try:
            return fn(payload)
        except RhodeError as exc:
            raise ProtocolError(f"data holder {party} sent an unusable {what} answer: {exc}") from None

    def setup_model(self, n_features: int) -> None:
        """The polynomial model and, once the joint evaluation keys exist, its cipher backend."""
        self.model = RecurrentModel(model_configs(self.run, n_features)[0])
        if self.ctx.has_relin_key:
            self.backend = K.backend_for(
                self.ctx, self.model, self.run.batch, self.refresh_round, self.margin
            )

    # -- collective operations -------------------------------------------------------------------------------
    def fold_answers(
        self,
        answers: dict[int, Payload],
        name: str,
        decode,
        aggregate,
        what: ProtocolKind,
        lead=None,
    ):
        """The one generic round's second half: every answer's share in blob ``name`` (``decode(bytes)``
        when it crossed a process boundary) folded with ``aggregate`` as it is read. ``lead``: the
        lead's share, already read (protocols whose lead share is the others' CRP); then ``answers``
        holds the other parties' only."""
        acc = Accumulator(self.ctx, aggregate, what)
        if lead is not None:
            acc.add(lead)
        for i in self.parties[1:] if lead is not None else self.active:
            acc.add(self.take_share(i, answers[i], name, decode, what))
        return acc.result()

    def take_share(self, party: int, p: Payload, name: str, decode, what: ProtocolKind):
        """Party ``party``'s share in blob ``name`` of ``p`` (a rhode error naming the party if unusable)."""
        return self._parse(party, what.value, lambda q: q.take(name, decode), p)

    def refresh_round(self, cts: list) -> list:
        """Refresh ``cts`` (from any holders) in one round: every data holder sends refresh shares for all
        of them; the aggregator adds the shares and re-encrypts (level 0)."""
        ctx = self.ctx
        req = refresh.prepare(ctx, cts)
        self.refresh_tag = secrets.token_hex(8)
        answers = self._all(
            Step.REFRESH,
            Payload(
                {Field.COUNT.value: len(cts), Field.REFRESH_TAG.value: self.refresh_tag},
                {
                    Field.REQUEST.value: Blob(
                        req, lambda: req.to_bytes(ctx), lambda: payload_size([req.c1s, req.crps], "request")
                    )
                },
            ),
        )
        agg = self.fold_answers(
            answers,
            Field.SHARES.value,
            lambda b: refresh.RefreshShare.from_bytes(ctx, b, count=len(cts)),
            refresh.aggregate,
            ProtocolKind.REFRESH,
        )
        self.refresh_rounds += 1
        self.refreshed_ciphertexts += len(cts)
        return refresh.finalize(ctx, req, agg)

    def spend(self, kind: Reveal, count: int, what: str | None = None) -> None:
        """Count ``count`` ciphertexts of ``kind`` against the joint key's decryption budget before they
        are revealed (BudgetError, nothing sent, if the budget does not cover them)."""
        if self.ledger is None:
            self.ledger = DecryptionLedger(self.ctx.params.decryption_budget)
        if self.ledger.budget != self.ctx.params.decryption_budget:
            raise ProtocolError(f"the decryption ledger counts against a budget of {self.ledger.budget}, "
                                f"the keys' flooding is sized for {self.ctx.params.decryption_budget}")
        self.ledger.spend(kind, count, what)

    def decrypt(self, cts: list, kind: Reveal, length: int | None = None) -> list[np.ndarray]:
        """Threshold decryption of ``cts`` (flooded shares from every data holder), counted as ``kind``."""
        self.spend(kind, len(cts))
        answers = self._all(Step.DECRYPT, Payload({}, {Field.CTS.value: K.cts_blob(self.ctx, cts)}))
        return self.fuse(answers, len(cts), length)

    def fuse(self, answers: dict[int, Payload], count: int, length: int | None) -> list[np.ndarray]:
        """Fold the decryption shares of ``count`` ciphertexts in ``answers`` and decode ``length`` values."""
        agg = self.fold_answers(
            answers,
            Field.SHARES.value,
            lambda b: decryption.DecryptionShare.from_bytes(self.ctx, b, count=count),
            decryption.aggregate,
            ProtocolKind.DECRYPTION,
        )
        return decryption.finalize(self.ctx, agg, length)

    def key_switch(self, cts: list, querier_pk) -> list:
        """Switch ``cts`` from the joint key to a querier's public key (one round; each ciphertext is
        counted as a revealed prediction)."""
        ctx = self.ctx
        self.spend(Reveal.PREDICTION, len(cts), "the querier's prediction")
        pk_blob = Blob(querier_pk, lambda: S.public_key_to_bytes(ctx, querier_pk, S.Kind.QUERIER_PUBLIC_KEY))
        answers = self._all(
            Step.KEY_SWITCH,
            Payload({}, {Field.CTS.value: K.cts_blob(ctx, cts), Field.QUERIER_PK.value: pk_blob}),
        )
        qtag = querier_pk.GetKeyTag()
        agg = self.fold_answers(
            answers,
            Field.SHARES.value,
            lambda b: key_switch.KeySwitchShare.from_bytes(ctx, b, key_tag=qtag, count=len(cts)),
            key_switch.aggregate,
            ProtocolKind.KEY_SWITCH,
        )
        return key_switch.finalize(ctx, agg)

    def decrypt_model(self, params: dict) -> dict[str, np.ndarray]:
        """Threshold decryption of the model (a unanimous decision of the data holders), one round."""
        names = list(params)
        self.backend.prepare_export(params.values())
        cts = [TC.ciphertexts(params[k]) for k in names]
        flat = self.decrypt([ct for part in cts for ct in part], Reveal.MODEL)
        out, pos = {}, 0
        for k, part in zip(names, cts, strict=True):
            out[k] = self.backend.decode(params[k], flat[pos : pos + len(part)])
            pos += len(part)
        return out

    # -- key generation and global statistics ----------------------------------------------------------------
