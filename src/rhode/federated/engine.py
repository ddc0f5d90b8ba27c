"""The in-process engines: an aggregator and N data holders on this machine.

:class:`Federation` wires the one protocol (:class:`~rhode.federated.aggregator.Aggregator`,
:class:`~rhode.federated.holder.HolderSide`) to a transport:
:class:`~rhode.federated.transport.LocalTransport`
(every holder in this process, objects handed over as they are: the sequential engine) or
:class:`~rhode.federated.workers.JobWorkers` (the holders' jobs in worker processes, the holders' own
steps and shares in this process: the parallel engine).
It also plays the querier: it makes a key pair, encrypts its windows under the joint key and is the
only one that decrypts the key-switched prediction.

Usage::

    with Federation(cfg, [h.train for h in holders], out / "parties", workers=1) as fed:
        stats = fed.keygen()
        params = fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed))
        params, record = fed.agg.iteration(0, params, stats)
        y = fed.predict(params, X)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rhode.data import Stats
from rhode.federated.aggregator import Aggregator
from rhode.federated.budget import budgeted, run_budget
from rhode.federated.config import RunConfig, run_fingerprint
from rhode.federated.files import PARTIES_DIR
from rhode.federated.holder import HolderSide
from rhode.federated.schema import Step
from rhode.federated.state import HolderSettings, MemoryState
from rhode.federated.transport import LocalTransport, Transport
from rhode.federated.workers import JobWorkers
from rhode.mhe import CkksParams, MheContext, Querier, preset


class Federation:
    """An in-process federation over ``series`` (every data holder's training series, party order).

    Args:
        cfg: the run configuration.
        series: one training :class:`~rhode.data.TimeSeries` per data holder.
        parties_dir: where each holder keeps its secret share for a resume (``party-<i>.key``, 0600);
            None: in memory only.
        workers: 1 = every holder in this process; more = that many worker processes.
        margin: the cipher backends' ``eager_margin`` (None: a refresh round takes only what needs it;
            in one process a round costs nothing beyond its shares).
        measure_bytes: account the bytes each party would send (costs a size computation per share kind).
    """

    def __init__(
        self,
        cfg: RunConfig,
        series: Sequence,
        parties_dir: str | os.PathLike | None = None,
        workers: int = 1,
        margin: int | None = None,
        measure_bytes: bool = True,
    ) -> None:
        self.cfg = cfg
        fp = run_fingerprint(cfg)
        settings = HolderSettings(cfg, fp, margin)
        self.pool = JobWorkers(settings, list(series), workers) if workers > 1 else None
        jobs = self.pool.jobs if self.pool is not None else None
        self.states = [MemoryState(i, settings, s, parties_dir, jobs) for i, s in enumerate(series)]
        transport: Transport = LocalTransport(
            {st.index: HolderSide(st).handle for st in self.states}, measure_bytes,
            concurrent=frozenset({Step.TRAIN, Step.RESUME}) if self.pool is not None else frozenset())
        self.transport = transport
        self.workers = max(1, workers)
        self.agg = Aggregator(cfg, fp, transport, margin=margin)

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop worker processes and paused jobs (idempotent)."""
        for st in self.states:
            st.jobs().close()
        self.transport.close()
        if self.pool is not None:
            self.pool.close()

    # -- keys ---------------------------------------------------------------------------------------------
    def keygen(self, params: CkksParams | None = None, inspect: int = 0) -> Stats:
        """Collective key generation under ``params`` (default: the run's preset, its flooding sized for
        the run's :func:`~rhode.federated.budget.run_budget` plus ``inspect`` more ciphertexts, which a
        test or benchmark decrypts to inspect the run, e.g. the model after every iteration) and the
        encrypted global statistics (revealed)."""
        if params is None:
            base = preset(self.cfg.preset)
            plan = run_budget(self.cfg, self.states[0].train_series().n_features, base)
            params = budgeted(base, dataclasses.replace(plan, queries=plan.queries + inspect))
        return self.agg.keygen(MheContext(params))

    def attach(self, ctx: MheContext, n_features: int) -> None:
        """A resumed run: the stored public keys in ``ctx``, every holder checked (HELLO)."""
        self.agg.hello(ctx)
        self.agg.setup_model(n_features)

    # -- the querier ----------------------------------------------------------------------------------------
    def predict(self, params: dict, X: np.ndarray) -> np.ndarray:
        """A querier's predictions (n, output_size) for its windows X (n, T, d): encrypted under the joint
        key, evaluated by the aggregator, switched to the querier's key, decrypted by the querier only."""
        yhat, switched, querier = self.predict_encrypted(params, X)
        return self.agg.backend.decode(yhat, querier.decrypt(switched))

    def predict_encrypted(self, params: dict, X: np.ndarray):
        """(encrypted result, switched ciphertexts, querier): tests check that the data holders
        themselves cannot decrypt the switched result."""
        be = self.agg.backend
        querier = Querier(self.agg.ctx)
        xs = be.encrypt_inputs([X[:, t, :] for t in range(X.shape[1])])
        yhat, switched = self.agg.predict(params, xs, querier.public_key)
        return yhat, switched, querier

    # -- accounting ------------------------------------------------------------------------------------------
    def bytes_per_party(self) -> int:
        """Bytes each data holder sent so far (the largest of them)."""
        per: dict[int, int] = {}
        for r in self.transport.rounds:
            for party, b in r.received.items():
                per[party] = per.get(party, 0) + b
        return max(per.values(), default=0)

    def refresh_counts(self) -> dict[str, int]:
        return {"rounds": self.agg.refresh_rounds, "ciphertexts": self.agg.refreshed_ciphertexts}

    def operation_counts(self) -> dict[str, int]:
        """Evaluator operations so far: the aggregator's and every holder's jobs'."""
        out = dict(self.agg.backend.counters()["total"]) if self.agg.backend is not None else {}
        for k, v in self.agg.holder_operations.items():
            out[k] = out.get(k, 0) + v
        return out


def parties_dir(out: str | os.PathLike) -> Path:
    """Where an in-process run keeps its data holders' secret shares."""
    return Path(out) / PARTIES_DIR
