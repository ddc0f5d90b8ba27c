"""The deployment's run policy around the one protocol: what the ServerApp keeps and reports.

:class:`DeploymentRun` drives :class:`~rhode.federated.aggregator.Aggregator` over Flower and keeps
the aggregator's directory (``server-dir``, public material only, the names of
:mod:`rhode.federated.files`): run.json, context.rhode, evalkeys.rhode, checkpoint.rhode, plus
``rounds.jsonl`` (one line per round trip: step, seconds, bytes to and from every data holder) and
``status.json`` (running, done, or failed with the error).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rhode.errors import CheckpointError, ProtocolError
from rhode.federated.aggregator import Aggregator
from rhode.federated.budget import DecryptionLedger
from rhode.federated.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint, write_checkpoint
from rhode.federated.dataprep import stats_from_json, stats_to_json
from rhode.federated.files import (
    RUN_JSON,
    atomic_write,
    load_public_keys,
    read_run_json,
    save_public_keys,
)
from rhode.federated.flower.settings import DeployConfig
from rhode.federated.payload import Payload, pack_bundle, unpack_bundle
from rhode.federated.report import check_divergence
from rhode.federated.schema import Field, input_blob
from rhode.federated.transport import RoundRecord, Transport
from rhode.mhe import MheContext
from rhode.mhe import serial as S

log = logging.getLogger("rhode.flower")

STATUS_JSON = "status.json"
ROUNDS_LOG = "rounds.jsonl"


class DeploymentRun:
    """A training or prediction run of the deployment (``dc.mode``) over ``transport``."""

    def __init__(self, dc: DeployConfig, transport: Transport) -> None:
        self.dc = dc
        self.dir = Path(dc.server_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        transport.on_round = self._log_round
        self.t = transport
        self.agg = Aggregator(
            dc.run,
            dc.fingerprint(),
            transport,
            round_timeout=dc.round_timeout,
            connect_timeout=dc.connect_timeout,
            margin=dc.refresh_margin,
        )
        self.meta: dict = {}
        self.agg.on_dropout = self._record_dropouts

    def _log_round(self, rec: RoundRecord) -> None:
        with open(self.dir / ROUNDS_LOG, "a") as fh:
            fh.write(json.dumps(rec.to_dict()) + "\n")
        log.info("round %-15s %6.2f s  %s", rec.step, rec.seconds, rec.tag)

    def status(self, state: str, **extra) -> None:
        atomic_write(
            self.dir / STATUS_JSON,
            json.dumps({"state": state, "time": time.time(), **extra}, indent=1).encode(),
        )

    def _record_dropouts(self, dropouts: list[dict]) -> None:
        """After a recovery: run.json says at once who dropped (a resumed run must not wait for them)."""
        self.meta["dropouts"] = dropouts
        self._save_meta()

    def _save_meta(self) -> None:
        atomic_write(self.dir / RUN_JSON, json.dumps(self.meta, indent=1, sort_keys=True).encode())

    def _load_meta(self) -> dict:
        meta = read_run_json(self.dir)
        if meta.get("fingerprint") != self.dc.fingerprint():
            raise CheckpointError(
                f"the run in {self.dir} was made with another run configuration; use "
                "the same options, or another server-dir"
            )
        if meta.get("n_parties") != self.dc.n_parties:
            raise CheckpointError(
                f"the run in {self.dir} has {meta.get('n_parties')} data holders, the "
                f"run config says n-parties={self.dc.n_parties}"
            )
        return meta

    @property
    def stats(self):
        return stats_from_json(json.dumps(self.meta["global_stats"]))

    # -- keys -----------------------------------------------------------------------------------------------
    def keygen(self) -> None:
        """Collective key generation and the global statistics (8 rounds); public files written."""
        self.t.tag = "keys"
        agg, params = self.agg, self.dc.params
        agg.ledger = DecryptionLedger.create(self.dir, params.decryption_budget)
        stats = agg.keygen(MheContext(params))
        save_public_keys(self.dir, agg.ctx)
        (self.dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        self.meta = {
            "fingerprint": self.dc.fingerprint(),
            "n_parties": self.dc.n_parties,
            "key_tag": agg.ctx.key_tag,
            "n_features": agg.schema.n_features,
            "features": agg.schema.features,
            "global_stats": json.loads(stats_to_json(stats)),
            "config": self.dc.run.to_dict(),
            "decryption_budget": self.dc.budget.to_dict(),
            "history": [],
        }
        self._save_meta()

    def load_keys(self) -> None:
        """A resumed or prediction run: the stored public keys, every holder checked (1 round)."""
        self.t.tag = "keys"
        self.meta = self._load_meta()
        ctx = load_public_keys(self.dir)
        self.agg.hello(ctx, self.meta.get("dropouts"))
        self.agg.ledger = DecryptionLedger.load(self.dir, ctx.params.decryption_budget)
        self.agg.setup_model(int(self.meta["n_features"]))

    # -- training -------------------------------------------------------------------------------------------
    def train(self) -> dict:
        """A whole training run (new, or resumed from the checkpoint); returns the run summary."""
        dc, agg = self.dc, self.agg
        t_start = time.monotonic()
        start = 0
        if dc.resume:
            self.load_keys()
            params = self._checkpoint_model() if (self.dir / CHECKPOINT_NAME).exists() else None
            start = read_checkpoint(self.dir).iteration if params is not None else 0
            agg.ledger.check(dc.run.global_iterations - start,
                             f"the losses of {dc.run.global_iterations - start} more iterations")
        else:
            self.keygen()
            params = None
        if params is None:
            params = agg.encrypt_model(agg.model.init_params(dc.run.seed))
        t_keys = time.monotonic() - t_start
        self.status("running", iteration=start)
        for it in range(start, dc.run.global_iterations):
            params, rec = agg.iteration(it, params, self.stats)
            self.meta["history"] = [h for h in self.meta.get("history", []) if h["iteration"] <= it] + [
                rec.to_dict()
            ]
            hist = self.meta["history"]
            losses = [{"iteration": h["iteration"], "loss_encrypted": h["loss"]} for h in hist]
            check_divergence(losses, dc.run.learning_rate)  # the last good checkpoint is kept
            write_checkpoint(
                self.dir,
                Checkpoint(
                    it + 1,
                    dc.fingerprint(),
                    agg.checkpoint_blobs(params),  # with momentum also every holder's velocity
                    {"history": self.meta["history"]},
                ),
            )
            self.meta["dropouts"] = agg.dropouts  # who dropped out when, who answers for them
            self._save_meta()
            self.status("running", iteration=it + 1)
            log.info(
                "global iteration %d done in %.1f s (%d rounds, %d refresh rounds, loss %.5f); checkpoint "
                "written",
                it + 1,
                rec.seconds,
                rec.rounds,
                rec.refresh_rounds,
                rec.loss,
            )
        return {
            "iterations": dc.run.global_iterations,
            "resumed_from": start if dc.resume else None,
            "seconds_keys": t_keys,
            "seconds_total": time.monotonic() - t_start,
            "decryptions": agg.ledger.to_dict(),
            "threshold": dc.run.key_threshold,
            "dropouts": agg.dropouts,
        }

    def _checkpoint_model(self) -> dict:
        """The checkpoint's encrypted global model; with momentum every holder's encrypted velocity goes
        back into the aggregator (:meth:`Aggregator.restore`), for the next TRAIN requests."""
        ckpt = read_checkpoint(self.dir)
        if ckpt.fingerprint != self.dc.fingerprint():
            raise CheckpointError(f"the checkpoint in {self.dir} was made with another configuration")
        return self.agg.restore(ckpt.model)

    # -- prediction -----------------------------------------------------------------------------------------
    def predict(self) -> dict:
        """Answer a querier's request file: evaluate the encrypted model on its encrypted windows,
        switch the result to its key (one KEY_SWITCH round), write the response file."""
        dc = self.dc
        if not dc.query_in or not dc.query_out:
            raise ProtocolError("mode 'predict' needs run config query-in and query-out (file paths)")
        self.load_keys()
        self.t.tag = "predict"
        agg, ctx = self.agg, self.agg.ctx
        params = self._checkpoint_model()
        try:
            req = unpack_bundle(Path(dc.query_in).read_bytes(), "querier request")
        except OSError as exc:
            raise ProtocolError(f"cannot read the querier's request {dc.query_in}: {exc.strerror}") from None
        qpk = S.public_key_from_bytes(ctx, req.blob(Field.QUERIER_PK.value), S.Kind.QUERIER_PUBLIC_KEY)
        shapes = req.int_list(Field.SHAPE.value)
        layouts = req.config.get(Field.LAYOUTS.value)
        T = len(layouts) if isinstance(layouts, list) else -1
        if len(shapes) != 2 or T < 1 or not all(isinstance(x, str) for x in layouts):
            raise ProtocolError("the querier's request has a malformed shape or layout list")
        xs = [
            agg.backend.import_batch(
                S.ciphertexts_from_bytes(ctx, req.blob(input_blob(t))), (shapes[0], shapes[1]), layouts[t]
            )
            for t in range(T)
        ]
        t0 = time.monotonic()
        yhat, out = agg.predict(params, xs, qpk)
        resp = Payload(
            {
                Field.LAYOUT.value: str(agg.backend.export_layout(yhat)),
                Field.SHAPE.value: list(yhat.shape),
                Field.ITERATION.value: read_checkpoint(self.dir).iteration,
            },
            {Field.RESULT.value: S.ciphertexts_to_bytes(ctx, out)},
        )
        atomic_write(Path(dc.query_out), pack_bundle(resp))
        return {"windows": shapes[0], "seconds_predict": time.monotonic() - t0}
