"""The aggregator's side of the deployment: it drives every protocol step and combines shares.

It holds no secret share. Everything it computes is secret-free: CRPs and scale adjustment for
refreshes, sums of shares (:mod:`rhode.mhe.protocols`), FedAvg of the encrypted local models, and the
evaluation of the encrypted model on a querier's encrypted inputs. Its directory (run config
``server-dir``) holds only public material::

    run.json         configuration fingerprint, party count, revealed global statistics, history
    context.rhode    the public context (parameters, CryptoContext, joint public key)
    evalkeys.rhode   the joint relinearization and rotation keys
    checkpoint.rhode the encrypted global model after the last completed global iteration
    rounds.jsonl     one line per round trip: step, seconds, bytes to and from every data holder
    status.json      the state of the last run (running, done, or failed with the error)

Rounds of a training run (N data holders, R refresh points per local training)::

    key generation  query.setup, query.ckg, query.jointkey, query.rkg1, query.rkg2, query.evalkeys,
                    query.stats, query.decrypt (8 rounds; the two secure sums of the global
                    statistics ride on jointkey/rkg2 and evalkeys/stats/decrypt)
    per iteration   train.local, then per refresh point: query.refresh (all holders' pending
                    ciphertexts in one round) + train.resume; FedAvg; one query.refresh that brings
                    the new global model to level 0  ->  2 + 2R rounds (plus a query.refresh if
                    FedAvg itself needs one)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from rhode.data import Stats
from rhode.errors import CheckpointError, DataError, ProtocolError, RhodeError
from rhode.federated.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint, write_checkpoint
from rhode.federated.flower import model_io as M
from rhode.federated.flower.holder import stats_from_json, stats_to_json
from rhode.federated.flower.settings import DeployConfig
from rhode.federated.flower.store import atomic_write
from rhode.federated.flower.transport import RoundRecord, Transport
from rhode.federated.flower.wire import Payload, pack_bundle, unpack_bundle
from rhode.mhe import MheContext
from rhode.mhe import protocols as P
from rhode.mhe import serial as S
from rhode.nn.fedavg import fedavg

log = logging.getLogger("rhode.flower")

RUN_JSON = "run.json"
CONTEXT_FILE = "context.rhode"
EVAL_KEYS_FILE = "evalkeys.rhode"
STATUS_JSON = "status.json"
ROUNDS_LOG = "rounds.jsonl"


class Aggregator:
    """Drives a training or prediction run over a :class:`Transport`.

    Args:
        dc: the deployment configuration (same run config as every data holder's).
        transport: how to reach the data holders.
    """

    def __init__(self, dc: DeployConfig, transport: Transport) -> None:
        self.dc = dc
        self.t = transport
        self.dir = Path(dc.server_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.t.on_round = self._log_round
        self.ctx: MheContext | None = None
        self.meta: dict = {}
        self.model = None
        self.backend = None
        self.server_refreshes = 0

    # -- bookkeeping -----------------------------------------------------------------------------------
    def _log_round(self, rec: RoundRecord) -> None:
        with open(self.dir / ROUNDS_LOG, "a") as fh:
            fh.write(json.dumps(rec.to_dict()) + "\n")
        log.info("round %-15s %6.2f s  %s", rec.step, rec.seconds, rec.tag)

    def status(self, state: str, **extra) -> None:
        atomic_write(self.dir / STATUS_JSON, json.dumps({"state": state, "time": time.time(), **extra},
                                                        indent=1).encode())

    def _save_meta(self) -> None:
        atomic_write(self.dir / RUN_JSON, json.dumps(self.meta, indent=1, sort_keys=True).encode())

    def _load_meta(self) -> dict:
        try:
            meta = json.loads((self.dir / RUN_JSON).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"no run in {self.dir} ({RUN_JSON} is missing); start one with "
                                  "resume=false (mode train)") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.dir / RUN_JSON} is unreadable: {exc}") from None
        if meta.get("fingerprint") != self.dc.fingerprint():
            raise CheckpointError(f"the run in {self.dir} was made with another run configuration; use "
                                  "the same options, or another server-dir")
        if meta.get("n_parties") != self.dc.n_parties:
            raise CheckpointError(f"the run in {self.dir} has {meta.get('n_parties')} data holders, the "
                                  f"run config says n-parties={self.dc.n_parties}")
        return meta

    @property
    def parties(self) -> list[int]:
        return list(range(self.dc.n_parties))

    def _all(self, step: str, payload: Payload) -> dict[int, Payload]:
        return self.t.exchange(step, dict.fromkeys(self.parties, payload), self.dc.round_timeout)

    def _setup_model(self, n_features: int) -> None:
        """The model, and its cipher backend (once the joint evaluation keys are installed)."""
        self.model, _, self.train_cfg = self.dc.models(n_features)
        if self.ctx.has_relin_key:
            self.backend = M.backend_for(self.ctx, self.model, self.dc.run.batch, self.refresh,
                                         self.dc.refresh_margin)

    # -- collective operations ---------------------------------------------------------------------------
    def refresh(self, cts: list) -> list:
        """One ``query.refresh`` round for ``cts`` (the aggregator's own, e.g. during FedAvg)."""
        self.server_refreshes += 1
        return self.refresh_round(cts)

    def refresh_round(self, cts: list) -> list:
        """Refresh ``cts`` (from any holders) with one round: every data holder sends IntMPBoot shares
        for all of them; the aggregator adds the shares and re-encrypts (level 0)."""
        ctx = self.ctx
        req = P.refresh_prepare(ctx, cts)
        answers = self._all("query.refresh", Payload({"count": len(cts)},
                                                     {"request": S.refresh_request_to_bytes(ctx, req)}))
        shares = [self._parse(i, "query.refresh", lambda p: S.refresh_shares_from_bytes(
            ctx, p.blob("shares"), count=len(cts)), answers[i]) for i in self.parties]
        return P.refresh_finalize(ctx, req, P.aggregate_refresh(ctx, shares))

    def decrypt_round(self, cts: list, length: int | None = None) -> list[np.ndarray]:
        """Threshold decryption of ``cts`` (flooded shares from every data holder)."""
        answers = self._all("query.decrypt", Payload({}, {"cts": S.ciphertexts_to_bytes(self.ctx, cts)}))
        return self._fuse(answers, len(cts), length)

    def _fuse(self, answers: dict[int, Payload], count: int, length: int | None) -> list[np.ndarray]:
        shares = [self._parse(i, "decryption", lambda p: S.ciphertexts_from_bytes(
            self.ctx, p.blob("shares"), S.Kind.DECRYPTION_SHARES, count=count), answers[i])
            for i in self.parties]
        return P.fuse_decryption(self.ctx, shares, length)

    @staticmethod
    def _parse(party: int, what: str, fn, payload: Payload):
        try:
            return fn(payload)
        except RhodeError as exc:
            raise ProtocolError(f"data holder {party} sent an unusable {what} answer: {exc}") from None

    # -- key generation (and global statistics) -------------------------------------------------------------
    def _sum_stats(self, step: str, ans: dict[int, Payload]):
        """The sum of every holder's encrypted statistics vector (blob ``stats``)."""
        cts = [self._parse(i, f"{step} statistics", lambda p: S.ciphertexts_from_bytes(
            self.ctx, p.blob("stats"), count=1)[0], ans[i]) for i in self.parties]
        total = cts[0]
        for ct in cts[1:]:
            total = self.ctx.cc.EvalAdd(total, ct)
        return total

    def _unscale(self, values: np.ndarray, exps: list[int], what: str) -> np.ndarray:
        """Undo the public pre-scaling of a decrypted statistics sum; a value beyond its public bound
        means the threshold decryption failed (shares that do not match the joint key)."""
        bound = np.exp2(np.asarray(exps, dtype=float))
        out = values * bound
        if not np.all(np.isfinite(out)) or np.any(np.abs(out) > 1.01 * bound + 1e-9):
            raise ProtocolError(f"the threshold decryption of the global {what} is wrong (outside the "
                                "public bounds): the data holders' secret shares do not match the joint key")
        return out

    def keygen(self) -> None:
        """Collective key generation and the encrypted global statistics (two secure sums, as the
        in-process engine): 8 rounds."""
        dc, params = self.dc, self.dc.params
        ctx = self.ctx = MheContext(params)
        n = dc.n_parties
        # 1. setup: public context to all, lead's pk share, every holder's public data summary
        setup = self.t.discover("query.setup", Payload(
            {"n_parties": n, "fingerprint": dc.fingerprint()}, {"context": S.context_to_bytes(ctx)}),
            n, dc.connect_timeout)
        summary = self._check_schema(setup)
        rows = summary["total_rows"]
        c = len(summary["columns"])
        lead_pk = self._parse(0, "public-key", lambda p: S.public_key_from_bytes(
            ctx, p.blob("pk_share"), S.Kind.PUBLIC_KEY_SHARE), setup[0])
        # 2. ckg: the others' public-key shares from the lead's CRP
        others = self.parties[1:]
        ans = self.t.exchange("query.ckg", dict.fromkeys(others, Payload({}, {"lead_pk_share": setup[0].blob(
            "pk_share")})), dc.round_timeout)
        pk_shares = [lead_pk] + [self._parse(i, "public-key", lambda p: S.public_key_from_bytes(
            ctx, p.blob("pk_share"), S.Kind.PUBLIC_KEY_SHARE), ans[i]) for i in others]
        P.finalize_public_key(ctx, P.aggregate_public_key(ctx, pk_shares))
        # 3. jointkey: joint pk to all; the lead's relinearization round-1 and rotation shares;
        #    every holder's pre-scaled column sums (first statistics sum)
        self._setup_model(summary["n_features"])
        rotations = M.rotations_for(self.model, dc.run.batch, params)
        ans = self._all("query.jointkey", Payload(
            {"rotations": rotations, "exps": summary["exps"], "total_rows": rows},
            {"joint_pk": S.public_key_to_bytes(ctx, ctx.public_key)}))
        for i in self.parties:
            if ans[i].config.get("key_tag") != ctx.key_tag:
                raise ProtocolError(f"data holder {i} bound its share to another joint key")
        sum1 = self._sum_stats("first", ans)
        lead_r1_b, lead_rot_b = ans[0].blob("r1_share"), ans[0].blob("rot_share")
        lead_r1 = self._parse(0, "relinearization", lambda p: S.eval_key_from_bytes(
            ctx, lead_r1_b, S.Kind.RELIN_SHARE_ROUND1), ans[0])
        lead_rot, _ = self._parse(0, "rotation-key", lambda p: S.rotation_keys_from_bytes(
            ctx, lead_rot_b, S.Kind.ROTATION_KEY_SHARE, rotations), ans[0])
        # 4. rkg1: the others' round-1 and rotation-key shares
        ans = self.t.exchange("query.rkg1", dict.fromkeys(others, Payload(
            {"rotations": rotations}, {"lead_r1_share": lead_r1_b, "lead_rot_share": lead_rot_b})),
            dc.round_timeout)
        r1 = [lead_r1] + [self._parse(i, "relinearization", lambda p: S.eval_key_from_bytes(
            ctx, p.blob("r1_share"), S.Kind.RELIN_SHARE_ROUND1), ans[i]) for i in others]
        rot = [lead_rot] + [self._parse(i, "rotation-key", lambda p: S.rotation_keys_from_bytes(
            ctx, p.blob("rot_share"), S.Kind.ROTATION_KEY_SHARE, rotations)[0], ans[i]) for i in others]
        round1 = P.aggregate_relin_round1(ctx, r1)
        P.finalize_rotation_keys(ctx, P.aggregate_rotation_keys(ctx, rot), rotations)
        # 5. rkg2, and the decryption shares of the first statistics sum -> the global mean
        ans = self._all("query.rkg2", Payload({}, {
            "round1": S.eval_key_to_bytes(ctx, round1, S.Kind.RELIN_SHARE_ROUND1),
            "cts": S.ciphertexts_to_bytes(ctx, [sum1])}))
        r2 = [self._parse(i, "relinearization", lambda p: S.eval_key_from_bytes(
            ctx, p.blob("r2_share"), S.Kind.RELIN_SHARE_ROUND2), ans[i]) for i in self.parties]
        P.finalize_relin_key(ctx, P.aggregate_relin_round2(ctx, r2))
        self._setup_model(summary["n_features"])
        mean = self._unscale(self._fuse(ans, 1, c)[0], summary["exps"], "mean")
        # 6. evalkeys: joint evaluation keys to all (for their workers); magnitudes of centred squares
        keys = S.eval_keys_to_bytes(ctx)
        ans = self._all("query.evalkeys", Payload({"mean": [float(m) for m in mean]}, {"evalkeys": keys}))
        for i in self.parties:
            if ans[i].config.get("key_tag") != ctx.key_tag:
                raise ProtocolError(f"data holder {i} stored evaluation keys of another joint key")
        exps2 = [int(e) for e in np.max([ans[i].int_list("exps") for i in self.parties], axis=0)]
        # 7. stats: pre-scaled sums of centred squares (second statistics sum); 8. their decryption
        ans = self._all("query.stats", Payload({"mean": [float(m) for m in mean], "exps": exps2,
                                                "total_rows": rows}))
        sum2 = self._sum_stats("second", ans)
        var = np.maximum(self._unscale(self.decrypt_round([sum2], c)[0], exps2, "variance"), 0.0)
        stats = Stats(tuple(summary["columns"]), summary["target"], rows, mean * rows,
                      (var + mean ** 2) * rows)
        atomic_write(self.dir / CONTEXT_FILE, S.context_to_bytes(ctx))
        atomic_write(self.dir / EVAL_KEYS_FILE, keys)
        (self.dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        self.meta = {"fingerprint": dc.fingerprint(), "n_parties": n, "key_tag": ctx.key_tag,
                     "n_features": summary["n_features"], "features": summary["features"],
                     "rotations": rotations, "global_stats": json.loads(stats_to_json(stats)),
                     "config": dc.run.to_dict(), "history": []}
        self._save_meta()

    def _check_schema(self, setup: dict[int, Payload]) -> dict:
        ref = setup[0]
        for i in self.parties[1:]:
            p = setup[i]
            for key in ("columns", "target", "features"):
                if p.config.get(key) != ref.config.get(key):
                    raise DataError(f"data holder {i} has {key} {p.config.get(key)!r} but data holder 0 has "
                                    f"{ref.config.get(key)!r}; every holder needs the same columns")
        exps = np.max([setup[i].int_list("exps") for i in self.parties], axis=0)
        return {"columns": list(ref.config["columns"]), "target": ref.get("target", str),
                "features": list(ref.config["features"]), "n_features": len(ref.config["features"]),
                "exps": [int(e) for e in exps],
                "total_rows": float(sum(setup[i].get("count", float) for i in self.parties))}

    def load_keys(self) -> None:
        """A resumed or prediction run: reload the public keys and check every holder (1 round)."""
        self.meta = self._load_meta()
        try:
            self.ctx = S.context_from_bytes((self.dir / CONTEXT_FILE).read_bytes())
            S.load_eval_keys(self.ctx, (self.dir / EVAL_KEYS_FILE).read_bytes())
        except FileNotFoundError as exc:
            raise CheckpointError(f"{exc.filename} is missing; the keys of this run are lost, start a new "
                                  "run") from None
        answers = self.t.discover("query.hello", Payload({"fingerprint": self.dc.fingerprint()}),
                                  self.dc.n_parties, self.dc.connect_timeout)
        for i, p in answers.items():
            if p.config.get("key_tag") != self.ctx.key_tag:
                raise ProtocolError(f"data holder {i} holds a secret share of another joint key; it must "
                                    "use the storage directory of this federation's key generation")
        self._setup_model(int(self.meta["n_features"]))

    @property
    def stats(self) -> Stats:
        return stats_from_json(json.dumps(self.meta["global_stats"]))

    # -- training ------------------------------------------------------------------------------------
    def train(self) -> dict:
        """A whole training run (new, or resumed from the checkpoint); returns the run summary."""
        dc = self.dc
        t_start = time.monotonic()
        if dc.resume:
            self.t.tag = "keys"
            self.load_keys()
            if (self.dir / CHECKPOINT_NAME).exists():
                ckpt = read_checkpoint(self.dir)
                if ckpt.fingerprint != dc.fingerprint():
                    raise CheckpointError(f"the checkpoint in {self.dir} was made with another configuration")
                params = M.model_from_checkpoint(self.ctx, self.backend, self.model, ckpt.model)
                start = ckpt.iteration
            else:
                params, start = self.backend.encrypt_params(self.model.init_params(dc.run.seed)), 0
        else:
            self.t.tag = "keys"
            self.keygen()
            params, start = self.backend.encrypt_params(self.model.init_params(dc.run.seed)), 0
        t_keys = time.monotonic() - t_start
        self.status("running", iteration=start)
        for it in range(start, dc.run.global_iterations):
            params = self.iteration(it, params)
        return {"iterations": dc.run.global_iterations, "resumed_from": start if dc.resume else None,
                "seconds_keys": t_keys, "seconds_total": time.monotonic() - t_start}

    def iteration(self, it: int, params: dict) -> dict:
        """One global iteration: local training on every holder (pausing for batched refresh rounds),
        FedAvg, checkpoint. Returns the new encrypted global model."""
        t0 = time.monotonic()
        self.t.tag = f"iteration-{it + 1}"
        n_rounds0 = len(self.t.rounds)
        job = f"{self.meta['key_tag'][:12]}-it{it}-{time.time_ns()}"
        model_b = M.model_to_bytes(self.ctx, self.backend, self.model, params)
        stats = json.dumps(self.meta["global_stats"])
        answers = self._all("train.local", Payload({"job": job, "iteration": it, "stats": stats},
                                                   {"model": model_b}))
        local: dict[int, tuple[bytes, int]] = {}
        refresh_points = refreshed = 0
        while True:
            pending: dict[int, list] = {}
            for i, p in answers.items():
                status = p.get("status", str)
                if status == "done":
                    local[i] = (p.blob("model"), p.get("windows", int))
                elif status == "pending":
                    pending[i] = self._parse(i, "pending-ciphertext", lambda q: S.ciphertexts_from_bytes(
                        self.ctx, q.blob("cts"), count=q.get("count", int)), p)
                else:
                    raise ProtocolError(f"data holder {i} answered training with status {status!r}")
            if not pending:
                break
            order = sorted(pending)
            flat = [ct for i in order for ct in pending[i]]
            fresh = self.refresh_round(flat)
            refresh_points += 1
            refreshed += len(flat)
            requests, pos = {}, 0
            for i in order:
                k = len(pending[i])
                requests[i] = Payload({"job": job},
                                      {"cts": S.ciphertexts_to_bytes(self.ctx, fresh[pos:pos + k])})
                pos += k
            answers = self.t.exchange("train.resume", requests, self.dc.round_timeout)
        missing = sorted(set(self.parties) - set(local))
        if missing:
            raise ProtocolError(f"data holder(s) {missing} returned no local model")
        models = [M.model_from_bytes(self.ctx, self.backend, self.model, local[i][0]) for i in self.parties]
        weights = [float(local[i][1]) for i in self.parties]
        self.t.tag = f"iteration-{it + 1}-fedavg"
        new = fedavg(self.backend, models, weights)
        # one more round brings the global model back to level 0: the next iteration (and a
        # prediction) then starts with every level available, which saves refresh points
        self.backend.refresh(new.values())
        rounds = self.t.rounds[n_rounds0:]
        rec = {"iteration": it + 1, "seconds": time.monotonic() - t0, "rounds": len(rounds),
               "refresh_points": refresh_points, "refreshed_ciphertexts": refreshed,
               "bytes_sent_per_party": _per_party(rounds, "sent"),
               "bytes_received_per_party": _per_party(rounds, "received"), "weights": weights}
        self.meta["history"] = [h for h in self.meta.get("history", []) if h["iteration"] <= it] + [rec]
        write_checkpoint(self.dir, Checkpoint(it + 1, self.dc.fingerprint(),
                                              M.model_to_checkpoint(self.ctx, self.backend, self.model, new),
                                              {"history": self.meta["history"]}))
        self._save_meta()
        self.status("running", iteration=it + 1)
        log.info("global iteration %d done in %.1f s (%d rounds, %d refresh points); checkpoint written",
                 it + 1, rec["seconds"], rec["rounds"], refresh_points)
        return new

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self) -> dict:
        """Answer a querier's request file: evaluate the encrypted model on its encrypted windows,
        switch the result to its key (one ``query.pcks`` round), write the response file."""
        dc = self.dc
        if not dc.query_in or not dc.query_out:
            raise ProtocolError("mode 'predict' needs run config query-in and query-out (file paths)")
        self.t.tag = "predict"
        self.load_keys()
        ckpt = read_checkpoint(self.dir)
        if ckpt.fingerprint != dc.fingerprint():
            raise CheckpointError(f"the checkpoint in {self.dir} was made with another configuration")
        params = M.model_from_checkpoint(self.ctx, self.backend, self.model, ckpt.model)
        try:
            req = unpack_bundle(Path(dc.query_in).read_bytes(), "querier request")
        except OSError as exc:
            raise ProtocolError(f"cannot read the querier's request {dc.query_in}: {exc.strerror}") from None
        qpk_b = req.blob("querier_pk")
        S.public_key_from_bytes(self.ctx, qpk_b, S.Kind.QUERIER_PUBLIC_KEY)
        shapes = req.int_list("shape")
        layouts = req.config.get("layouts")
        T = len(layouts) if isinstance(layouts, list) else -1
        if len(shapes) != 2 or T < 1 or not all(isinstance(x, str) for x in layouts):
            raise ProtocolError("the querier's request has a malformed shape or layout list")
        xs = [M.batch_from_ciphertexts(self.backend, S.ciphertexts_from_bytes(self.ctx, req.blob(f"x{t}")),
                                       (shapes[0], shapes[1]), layouts[t]) for t in range(T)]
        t0 = time.monotonic()
        yhat = self.model.predict(self.backend, params, xs)
        cts = self.backend.ciphertexts(yhat)
        ans = self._all("query.pcks", Payload({}, {"cts": S.ciphertexts_to_bytes(self.ctx, cts),
                                                   "querier_pk": qpk_b}))
        qtag = S.public_key_from_bytes(self.ctx, qpk_b, S.Kind.QUERIER_PUBLIC_KEY).GetKeyTag()
        shares = [self._parse(i, "key-switch", lambda p: S.ciphertexts_from_bytes(
            self.ctx, p.blob("shares"), S.Kind.KEY_SWITCH_SHARES, key_tag=qtag, count=len(cts)), ans[i])
            for i in self.parties]
        out = P.aggregate_key_switch(self.ctx, shares)
        resp = Payload({"layout": M.export_layout(self.backend, yhat), "shape": list(yhat.shape),
                        "iteration": ckpt.iteration},
                       {"result": S.ciphertexts_to_bytes(self.ctx, out)})
        atomic_write(Path(dc.query_out), pack_bundle(resp))
        return {"windows": shapes[0], "seconds_predict": time.monotonic() - t0}


def _per_party(rounds: list[RoundRecord], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rounds:
        for party, b in getattr(r, key).items():
            out[str(party)] = out.get(str(party), 0) + b
    return out
