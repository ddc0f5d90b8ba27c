"""A data holder's side of every protocol step: what its ClientApp does with each message.

:func:`handle` is the whole ClientApp logic, independent of Flower (the ClientApp only converts
records, and tests can call it directly). Each step reads the party's state from its node-local
storage (:class:`~rhode.federated.flower.store.NodeStore`), computes its share with its secret, writes
back what must survive, and returns a small :class:`~rhode.federated.flower.wire.Payload`. The secret
share is loaded from its 0600 file for the step that needs it and never leaves this module.

Steps (message type -> what the holder does):

=================  =================================================================================
``query.setup``    store the public context; the lead samples its secret share and sends its
                   public-key share; every holder sends its party index, its data schema, its row
                   count and the power-of-two magnitudes of its columns (all public)
``query.ckg``      non-leads: sample a secret share from the lead's CRP, send the public-key share
``query.jointkey`` store the joint public key and bind the secret share to it; the lead sends its
                   relinearization round-1 and rotation-key shares (they fix the CRPs); every
                   holder sends its encrypted, pre-scaled column sums (first statistics sum)
``query.rkg1``     non-leads: relinearization round-1 and rotation-key shares
``query.rkg2``     relinearization round-2 share; decryption share of the first statistics sum
``query.evalkeys`` store the joint evaluation keys; from the revealed global mean, the power-of-two
                   magnitudes of the centred squares
``query.stats``    encrypted, pre-scaled sums of centred squares (second statistics sum)
``query.hello``    party index and joint key tag (a resumed or prediction run checks them)
``query.refresh``  refresh (IntMPBoot) shares for every pending ciphertext of every holder
``query.decrypt``  (flooded) threshold-decryption shares
``query.pcks``     key-switch shares towards a querier's public key
``train.local``    hand the global model to the node-local worker; answer with its pending
                   ciphertexts (to refresh) or its local model
``train.resume``   hand refreshed ciphertexts to the worker; answer as for ``train.local``
=================  =================================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np

from rhode.data import Normalizer, Stats, load_csv, make_windows, min_rows, train_test_split
from rhode.data.timeseries import TimeSeries
from rhode.errors import DataError, ProtocolError, SerializationError
from rhode.federated.dataprep import magnitude_exponents
from rhode.federated.flower import worker as W
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import CONTEXT, EVAL_KEYS, NodeStore
from rhode.federated.flower.wire import Payload
from rhode.mhe import MheContext, Party
from rhode.mhe import serial as S

STEPS: dict[str, Callable] = {}


def step(name: str):
    def deco(fn):
        STEPS[name] = fn
        return fn
    return deco


def handle(message_type: str, payload: Payload, node: NodeConfig, dc: DeployConfig,
           watch_pid: int) -> Payload:
    """Run one protocol step for this data holder; ``watch_pid`` is the process the training worker
    outlives no longer (the SuperExec in a deployment)."""
    fn = STEPS.get(message_type)
    if fn is None:
        raise ProtocolError(f"unknown step {message_type!r}")
    return fn(Holder(node, dc, watch_pid), payload)


class Holder:
    """One data holder's view of its node: configuration, storage, context and secret share."""

    def __init__(self, node: NodeConfig, dc: DeployConfig, watch_pid: int) -> None:
        self.node = node
        self.dc = dc
        self.store = NodeStore(node.storage)
        self.watch_pid = watch_pid
        self._ctx: MheContext | None = None

    @property
    def index(self) -> int:
        return self.node.party_index

    def context(self) -> MheContext:
        """The stored public context (with the joint public key once it exists)."""
        if self._ctx is None:
            self._ctx = S.context_from_bytes(self.store.read(CONTEXT, "public context"))
        return self._ctx

    def party(self) -> Party:
        if not self.store.secret_path.exists():
            raise ProtocolError(
                f"data holder {self.index} has no secret share in {self.store.root}: it did not take part "
                "in key generation (start a new run), or its node config 'storage' is wrong")
        return Party.load(self.context(), self.store.secret_path)

    def check_lead(self, want_lead: bool, what: str) -> None:
        if (self.index == 0) != want_lead:
            raise ProtocolError(f"'{what}' is for {'the lead' if want_lead else 'non-lead data holders'}, "
                                f"but this is data holder {self.index}")

    # -- data -----------------------------------------------------------------------------------------
    def series(self) -> tuple[TimeSeries, TimeSeries]:
        """This holder's train and test parts, split in time order as the in-process engine does."""
        run = self.dc.run
        if not self.node.data:
            raise DataError(f"data holder {self.index} has no data: set node config data='/path/file.csv'")
        if run.target is None:
            raise DataError("run config 'target' is empty: name the column to forecast")
        s = load_csv(self.node.data, run.target, run.features)
        need = min_rows(run.timesteps, run.horizon)
        if s.n_rows * run.test_fraction < need or s.n_rows * (1 - run.test_fraction) < need:
            enough = math.ceil(need / min(run.test_fraction, 1 - run.test_fraction))
            raise DataError(
                f"data holder {self.index} ({s.source}) has {s.n_rows} rows: too few for windows of "
                f"{run.timesteps} timesteps + horizon {run.horizon} in both the train and the test part "
                f"(test fraction {run.test_fraction}); need at least {enough} rows, or lower timesteps")
        return train_test_split(s, run.test_fraction)

    def windows(self, stats: Stats) -> tuple[np.ndarray, np.ndarray]:
        """Normalized training windows X (n, T, d), Y (n, 1) under the global statistics."""
        train, _ = self.series()
        return make_windows(Normalizer.from_stats(stats).normalize(train), self.dc.run.timesteps,
                            self.dc.run.horizon)


def stats_to_json(s: Stats) -> str:
    return json.dumps({"columns": list(s.columns), "target": s.target, "count": s.count,
                       "sum": list(map(float, s.sum)), "sumsq": list(map(float, s.sumsq))})


def stats_from_json(text: str) -> Stats:
    try:
        d = json.loads(text)
        return Stats(tuple(d["columns"]), str(d["target"]), float(d["count"]),
                     np.asarray(d["sum"], dtype=float), np.asarray(d["sumsq"], dtype=float))
    except (ValueError, KeyError, TypeError):
        raise SerializationError("global statistics are malformed") from None


def stat_values(train: TimeSeries) -> np.ndarray:
    """(n, c) values of the statistics columns (features, then the target if it is not a feature)."""
    return train.values if train.target_is_feature else np.column_stack([train.values, train.target])


def stats_vector(values: np.ndarray, exps: list[int], total_rows: float) -> np.ndarray:
    """What a holder encrypts for one secure sum of the global statistics: its column sums of
    ``values`` pre-scaled by the public powers of two 2^-e, divided by the public total row count
    (every entry in [-1, 1]), as the in-process engine does."""
    scale = np.exp2(-np.asarray(exps, dtype=float))
    if scale.shape != (values.shape[1],):
        raise ProtocolError(f"expected {values.shape[1]} column exponents, got {scale.size}")
    return (values * scale).sum(axis=0) / total_rows


def _mean(p: Payload, c: int) -> np.ndarray:
    mean = np.asarray(p.config.get("mean"), dtype=float) if isinstance(p.config.get("mean"), list) else None
    if mean is None or mean.shape != (c,) or not np.all(np.isfinite(mean)):
        raise SerializationError("message has no valid 'mean' field")
    return mean


# -- key generation ---------------------------------------------------------------------------------------
@step("query.setup")
def _setup(h: Holder, p: Payload) -> Payload:
    n = p.get("n_parties", int)
    if not 0 <= h.index < n:
        raise ProtocolError(f"node config party-index={h.index}, but the federation has {n} data holders "
                            f"(indices 0 to {n - 1})")
    fp = p.get("fingerprint", str)
    if fp != h.dc.fingerprint():
        raise ProtocolError("this data holder's run configuration differs from the aggregator's")
    train, _ = h.series()
    ctx_bytes = p.blob("context")
    ctx = S.context_from_bytes(ctx_bytes)
    if ctx.public_key is not None:
        raise ProtocolError("setup must carry a context without a joint public key")
    # a new key epoch: forget the previous one (worker, evaluation keys, secret share)
    h.store.kill_worker()
    for name in (EVAL_KEYS,):
        (h.store.root / name).unlink(missing_ok=True)
    h.store.secret_path.unlink(missing_ok=True)
    h.store.write(CONTEXT, ctx_bytes)
    out = Payload({"party": h.index, "columns": list(train.stat_columns), "target": train.target_name,
                   "features": list(train.feature_names), "count": float(train.n_rows),
                   "exps": [int(e) for e in magnitude_exponents(stat_values(train))]})
    if h.index == 0:
        party = Party.create(ctx, 0)
        party.save(h.store.secret_path)
        out.blobs["pk_share"] = S.public_key_to_bytes(ctx, party.public_key_share, S.Kind.PUBLIC_KEY_SHARE)
    return out


@step("query.ckg")
def _ckg(h: Holder, p: Payload) -> Payload:
    h.check_lead(False, "query.ckg")
    ctx = h.context()
    lead = S.public_key_from_bytes(ctx, p.blob("lead_pk_share"), S.Kind.PUBLIC_KEY_SHARE)
    party = Party.create(ctx, h.index, lead)
    party.save(h.store.secret_path)
    return Payload({"party": h.index},
                   {"pk_share": S.public_key_to_bytes(ctx, party.public_key_share, S.Kind.PUBLIC_KEY_SHARE)})


@step("query.jointkey")
def _jointkey(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    if ctx.public_key is not None:
        raise ProtocolError("this data holder already has a joint public key; start a new run for new keys")
    party = h.party()
    ctx.public_key = S.public_key_from_bytes(ctx, p.blob("joint_pk"))
    party.bind_to_joint_key()
    party.save(h.store.secret_path)
    h.store.write(CONTEXT, S.context_to_bytes(ctx))
    train, _ = h.series()
    v = stats_vector(stat_values(train), p.int_list("exps"), p.get("total_rows", float))
    out = Payload({"party": h.index, "key_tag": ctx.key_tag},
                  {"stats": S.ciphertexts_to_bytes(ctx, [ctx.encrypt(v)])})
    if h.index == 0:
        rotations = p.int_list("rotations")
        r1 = party.relin_share_round1()
        out.blobs["r1_share"] = S.eval_key_to_bytes(ctx, r1, S.Kind.RELIN_SHARE_ROUND1)
        out.blobs["rot_share"] = S.rotation_keys_to_bytes(ctx, party.rotation_key_share(rotations), rotations)
    return out


@step("query.rkg1")
def _rkg1(h: Holder, p: Payload) -> Payload:
    h.check_lead(False, "query.rkg1")
    ctx = h.context()
    party = h.party()
    rotations = p.int_list("rotations")
    lead_r1 = S.eval_key_from_bytes(ctx, p.blob("lead_r1_share"), S.Kind.RELIN_SHARE_ROUND1)
    lead_rot, _ = S.rotation_keys_from_bytes(ctx, p.blob("lead_rot_share"), S.Kind.ROTATION_KEY_SHARE,
                                             rotations)
    return Payload({"party": h.index}, {
        "r1_share": S.eval_key_to_bytes(ctx, party.relin_share_round1(lead_r1), S.Kind.RELIN_SHARE_ROUND1),
        "rot_share": S.rotation_keys_to_bytes(ctx, party.rotation_key_share(rotations, lead_rot), rotations),
    })


@step("query.rkg2")
def _rkg2(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    party = h.party()
    round1 = S.eval_key_from_bytes(ctx, p.blob("round1"), S.Kind.RELIN_SHARE_ROUND1)
    out = _decrypt_shares(h, p)  # of the first statistics sum (the global mean)
    r2 = party.relin_share_round2(round1)
    out.blobs["r2_share"] = S.eval_key_to_bytes(ctx, r2, S.Kind.RELIN_SHARE_ROUND2)
    return out


@step("query.evalkeys")
def _evalkeys(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    keys = p.blob("evalkeys")
    S.load_eval_keys(ctx, keys)  # validates before storing
    h.store.write(EVAL_KEYS, keys)
    h.store.kill_worker()  # a worker holding older keys must not serve this epoch
    train, _ = h.series()
    values = stat_values(train)
    centred = (values - _mean(p, values.shape[1])) ** 2
    return Payload({"party": h.index, "key_tag": ctx.key_tag,
                    "exps": [int(e) for e in magnitude_exponents(centred)]})


@step("query.stats")
def _stats(h: Holder, p: Payload) -> Payload:
    """The second statistics sum: centred squares around the revealed global mean."""
    ctx = h.context()
    train, _ = h.series()
    values = stat_values(train)
    centred = (values - _mean(p, values.shape[1])) ** 2
    v = stats_vector(centred, p.int_list("exps"), p.get("total_rows", float))
    return Payload({"party": h.index}, {"stats": S.ciphertexts_to_bytes(ctx, [ctx.encrypt(v)])})


@step("query.hello")
def _hello(h: Holder, p: Payload) -> Payload:
    fp = p.get("fingerprint", str)
    if fp != h.dc.fingerprint():
        raise ProtocolError("this data holder's run configuration differs from the aggregator's")
    ctx = h.context()
    h.party()  # the secret share must be there and belong to the joint key
    if not h.store.has(EVAL_KEYS):
        raise ProtocolError(f"data holder {h.index} has no evaluation keys; start a new run (key generation)")
    return Payload({"party": h.index, "key_tag": ctx.key_tag})


# -- shares on ciphertexts --------------------------------------------------------------------------------
@step("query.refresh")
def _refresh(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    c1s, crps = S.refresh_request_from_bytes(ctx, p.blob("request"))
    pairs = h.party().refresh_share(c1s, crps)
    return Payload({"party": h.index, "count": len(pairs)}, {"shares": S.refresh_shares_to_bytes(ctx, pairs)})


def _decrypt_shares(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    cts = S.ciphertexts_from_bytes(ctx, p.blob("cts"))
    shares = h.party().decryption_share(cts, flood=True)
    return Payload({"party": h.index, "count": len(shares)},
                   {"shares": S.ciphertexts_to_bytes(ctx, shares, S.Kind.DECRYPTION_SHARES)})


@step("query.decrypt")
def _decrypt(h: Holder, p: Payload) -> Payload:
    return _decrypt_shares(h, p)


@step("query.pcks")
def _pcks(h: Holder, p: Payload) -> Payload:
    ctx = h.context()
    qpk = S.public_key_from_bytes(ctx, p.blob("querier_pk"), S.Kind.QUERIER_PUBLIC_KEY)
    cts = S.ciphertexts_from_bytes(ctx, p.blob("cts"))
    shares = h.party().key_switch_share(cts, qpk)
    return Payload({"party": h.index, "count": len(shares)},
                   {"shares": S.ciphertexts_to_bytes(ctx, shares, S.Kind.KEY_SWITCH_SHARES)})


# -- local training through the node-local worker ----------------------------------------------------------
@step("train.local")
def _train_local(h: Holder, p: Payload) -> Payload:
    job = p.get("job", str)
    iteration = p.get("iteration", int)
    stats = p.get("stats", str)
    stats_from_json(stats)
    req = Payload({"op": "start", "job": job, "iteration": iteration, "stats": stats,
                   "key_tag": h.context().key_tag, "refresh_margin": h.dc.refresh_margin,
                   "run_config": json.dumps(h.dc.run.to_dict()),
                   "node_config": json.dumps({"party-index": h.index, "data": h.node.data,
                                              "storage": str(h.node.storage)})},
                  {"model": p.blob("model")})
    return _worker_reply(h, W.call(h.store, req, h.watch_pid, restart_if_stale=True), job)


@step("train.resume")
def _train_resume(h: Holder, p: Payload) -> Payload:
    job = p.get("job", str)
    req = Payload({"op": "resume", "job": job}, {"cts": p.blob("cts")})
    return _worker_reply(h, W.call(h.store, req, h.watch_pid, restart_if_stale=False), job)


def _worker_reply(h: Holder, r: Payload, job: str) -> Payload:
    if r.error:
        raise ProtocolError(f"data holder {h.index}'s training worker failed: {r.error}")
    if r.config.get("job") != job:
        raise ProtocolError(f"data holder {h.index}'s training worker is on another job "
                            f"({r.config.get('job')!r}, expected {job!r}); the iteration must restart")
    status = r.get("status", str)
    out = Payload({"party": h.index, "status": status, "job": job})
    if status == "pending":
        out.config["count"] = r.get("count", int)
        out.blobs["cts"] = r.blob("cts")
    elif status == "done":
        out.config["windows"] = r.get("windows", int)
        out.blobs["model"] = r.blob("model")
    else:
        raise ProtocolError(f"data holder {h.index}'s training worker answered {status!r}")
    return out
