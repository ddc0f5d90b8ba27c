"""The in-process engine: every data holder, the aggregator and the querier in one process.

:class:`EncryptedSession` carries the protocol steps of DESIGN.md with direct calls: collective key
generation (one copy of the public evaluation keys for all parties), encrypted secure sums, local
training of each data holder on the encrypted model with its plaintext windows (refreshes run the
collective refresh protocol at once), FedAvg aggregation, encrypted loss tracking, prediction for a
querier (key switch to the querier's key) and, on a unanimous decision, threshold decryption of the
final model. It counts what each party would send and how long each phase takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rhode.errors import CheckpointError
from rhode.mhe import CkksParams, LocalCollective, Querier
from rhode.mhe.evaluator import Evaluator
from rhode.mhe.keystore import load_collective, save_collective
from rhode.mhe.serial import ciphertexts_from_bytes, ciphertexts_to_bytes
from rhode.nn.config import TrainConfig
from rhode.nn.fedavg import fedavg
from rhode.nn.model import RecurrentModel
from rhode.nn.train import local_training
from rhode.packing import plan as make_plan
from rhode.tensor.cipher import CipherBackend


class PhaseTimer:
    """Seconds spent per phase (local computation, refresh, aggregation, loss) since a reset."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, dt: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + dt

    def summary(self) -> dict[str, float]:
        s = dict(self.seconds)
        # refreshes happen inside local training: report local computation without them
        if "local" in s:
            s["local"] = s["local"] - s.get("refresh_in_local", 0.0)
        s.pop("refresh_in_local", None)
        return {f"seconds_{k}": v for k, v in s.items()}


class EncryptedSession:
    """All parties of one federation in this process.

    Args:
        collective: the N data holders' keys (secret shares) and the joint public keys.
        model: the polynomial-activation model (same as the mirror's).
        batch: training mini-batch size b (the packing's chunk is derived from it).
        eager_margin: the cipher backend's ``eager_margin``. ``None`` (default): a refresh round
            takes only the ciphertexts that need it. In one process a round costs nothing beyond
            its shares, and joining nearly spent ciphertexts early refreshes more of them (GRU at
            N = 4: 250 instead of 148 per global iteration, docs/benchmarks/scaling.md, "Refresh
            batching"); a deployment, where every round is a network round trip, sets a margin.
    """

    def __init__(self, collective: LocalCollective, model: RecurrentModel, batch: int,
                 eager_margin: int | None = None) -> None:
        self.collective = collective
        self.model = model
        self.batch = batch
        self.params: CkksParams = collective.context.params
        self.plan = plan_for(model, batch, self.params)
        collective.add_rotation_keys(self.plan.rotation_indices())
        self.timer = PhaseTimer()
        self._in_local = False
        self.evaluator = Evaluator(collective.context)
        self.backend = CipherBackend(self.evaluator, self.plan, refresh=self._refresh,
                                     eager_margin=eager_margin)
        self.model_bytes_sent = 0  # bytes each data holder uploads (its ciphertexts), per holder
        self.worker_operations: dict[str, int] = {}  # counted in ParallelTrainer workers

    # -- construction and persistence ----------------------------------------------------------------
    @classmethod
    def create(cls, params: CkksParams, n_parties: int, model: RecurrentModel,
               batch: int) -> EncryptedSession:
        """Collective key generation for ``n_parties`` (public, relinearization and exactly the
        rotation keys the packing needs)."""
        plan = plan_for(model, batch, params)
        collective = LocalCollective(params, n_parties, rotations=plan.rotation_indices())
        return cls(collective, model, batch)

    def save(self, out: Path) -> None:
        """Public keys to ``out/keys``; each party's secret share to ``out/parties`` (0600)."""
        save_collective(self.collective, Path(out) / "keys", Path(out) / "parties")

    @classmethod
    def load(cls, out: Path, model: RecurrentModel, batch: int) -> EncryptedSession:
        """Reload the keys written by :meth:`save`."""
        keys, parties = Path(out) / "keys", Path(out) / "parties"
        if not keys.is_dir() or not parties.is_dir():
            raise CheckpointError(f"no keys in {out}; the run cannot be resumed, start a new one")
        return cls(load_collective(keys, parties), model, batch)

    # -- protocol steps ------------------------------------------------------------------------------
    def _refresh(self, cts: list) -> list:
        t0 = time.perf_counter()
        out = self.collective.refresh(cts)
        dt = time.perf_counter() - t0
        self.timer.add("refresh", dt)
        if self._in_local:
            self.timer.add("refresh_in_local", dt)
        return out

    def reset_timers(self) -> PhaseTimer:
        """Start a new per-iteration timer (returned; it fills up as the iteration runs)."""
        self.timer = PhaseTimer()
        return self.timer

    def secure_sum(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """Each party encrypts its vector under the joint key, the aggregator adds the ciphertexts
        and the parties threshold-decrypt only the sum."""
        cts = [self.collective.encrypt(np.asarray(v, dtype=float)) for v in vectors]
        self.model_bytes_sent += len(ciphertexts_to_bytes(self.collective.context, cts[:1]))
        total = cts[0]
        for ct in cts[1:]:
            total = self.evaluator.add(total, ct)
        return self.collective.decrypt([total], length=len(vectors[0]))[0]

    def encrypt_model(self, params: dict[str, np.ndarray]) -> dict:
        """The initial model (weights from the shared seed) encrypted under the joint key."""
        return {k: self.backend.param(v) for k, v in params.items()}

    def local_training(self, params: dict, X: np.ndarray, Y: np.ndarray, train: TrainConfig, *,
                       seed: int, party: int, iteration: int,
                       on_step: Callable[[int], None] | None = None) -> dict:
        """Data holder ``party``: m local steps on the encrypted model with its plaintext windows."""
        t0 = time.perf_counter()
        self._in_local = True
        try:
            out = local_training(self.backend, self.model, dict(params), X, Y, train, seed=seed,
                                 party=party, iteration=iteration, on_step=on_step)
        finally:
            self._in_local = False
        self.timer.add("local", time.perf_counter() - t0)
        return out

    def aggregate(self, local_models: Sequence[dict], weights: Sequence[float] | None) -> dict:
        """FedAvg: each holder sends its encrypted local model, the aggregator sums and scales."""
        t0 = time.perf_counter()
        ctx = self.collective.context
        self.model_bytes_sent += sum(len(ciphertexts_to_bytes(ctx, self.backend.export_param(t)))
                                     for t in local_models[0].values())
        out = fedavg(self.backend, local_models, weights)
        self.timer.add("aggregation", time.perf_counter() - t0)
        return out

    def encrypted_loss(self, params: dict, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
        """Training loss 1/(2n) sum (yhat - y)^2 of the encrypted model over every holder's batch:
        each holder computes its encrypted sum of squared errors, the aggregator adds them, and only
        the global loss is threshold-decrypted."""
        t0 = time.perf_counter()
        be = self.backend
        n = sum(len(X) for X, _ in batches)
        total = None
        for X, Y in batches:
            yhat = self.model.predict(be, params, [be.data(X[:, t, :]) for t in range(X.shape[1])])
            err = be.sub(yhat, be.data(Y))
            sq = be.batch_sum(be.mul(err, be.mul(err, be.data(np.full(Y.shape, 1.0 / (2 * n))))))
            total = sq if total is None else be.add(total, sq)
        values = self.collective.decrypt(be.ciphertexts(total))
        loss = float(np.sum(be.decode(total, values)))
        self.timer.add("loss", time.perf_counter() - t0)
        return loss

    def predict(self, params: dict, X: np.ndarray) -> np.ndarray:
        """A querier encrypts its windows X (n, T, d) under the joint key; the encrypted model is
        evaluated; the data holders switch the result to the querier's key; only the querier
        decrypts. Returns the querier's predictions (n, output_size)."""
        be = self.backend
        querier = Querier(self.collective.context)
        xs = be.encrypt_inputs([X[:, t, :] for t in range(X.shape[1])])
        yhat = self.model.predict(be, params, xs)
        switched = self.collective.key_switch(be.ciphertexts(yhat), querier.public_key)
        return be.decode(yhat, querier.decrypt(switched))

    def predict_encrypted(self, params: dict, X: np.ndarray):
        """Like :meth:`predict` but return (encrypted result, querier, switched ciphertexts) so tests
        can check that the data holders themselves cannot decrypt the switched result."""
        be = self.backend
        querier = Querier(self.collective.context)
        xs = be.encrypt_inputs([X[:, t, :] for t in range(X.shape[1])])
        yhat = self.model.predict(be, params, xs)
        switched = self.collective.key_switch(be.ciphertexts(yhat), querier.public_key)
        return yhat, querier, switched

    def decrypt_model(self, params: dict) -> dict[str, np.ndarray]:
        """Threshold decryption of the model by all data holders (a unanimous decision)."""
        out = {}
        for k, t in params.items():
            out[k] = self.backend.decode(t, self.collective.decrypt(self.backend.ciphertexts(t)))
        return out

    def export_model(self, params: dict) -> dict[str, list[bytes]]:
        """The encrypted model as bytes (checkpoints, messages)."""
        ctx = self.collective.context
        return {k: [ciphertexts_to_bytes(ctx, self.backend.export_param(t))] for k, t in params.items()}

    def import_model(self, blobs: dict[str, list[bytes]]) -> dict:
        """Inverse of :meth:`export_model`, checking parameter names and shapes."""
        shapes = self.model.param_shapes
        if list(blobs) != list(shapes):
            raise CheckpointError(f"checkpoint holds parameters {list(blobs)}, the model has {list(shapes)}")
        ctx = self.collective.context
        return {k: self.backend.import_param(ciphertexts_from_bytes(ctx, v[0], count=1), shapes[k])
                for k, v in blobs.items()}

    # -- accounting ----------------------------------------------------------------------------------
    def bytes_per_party(self) -> int:
        """Bytes each data holder sent so far (key generation, refresh/decryption/key-switch shares,
        local models)."""
        return int(self.collective.stats["bytes_per_party"] + self.model_bytes_sent)

    def refresh_counts(self) -> dict[str, int]:
        return {"rounds": int(self.collective.stats["refresh_rounds"]),
                "ciphertexts": int(self.collective.stats["refreshed_ciphertexts"])}

    def operation_counts(self) -> dict[str, int]:
        """Evaluator operations so far: this process's backend plus any parallel workers'."""
        out = dict(self.backend.counters()["total"])
        for k, v in self.worker_operations.items():
            out[k] = out.get(k, 0) + v
        return out


def plan_for(model: RecurrentModel, batch: int, params: CkksParams):
    """The packing plan for ``model`` trained with mini-batches of ``batch`` samples."""
    cfg = model.config
    return make_plan(max(cfg.input_size, cfg.hidden_size, cfg.output_size), batch, params.slots)
