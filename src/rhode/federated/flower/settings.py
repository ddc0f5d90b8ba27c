"""Run and node configuration of the Flower deployment.

The run configuration is ``[tool.flwr.app.config]`` of deploy/flower/pyproject.toml, overridden with
``flwr run ... --run-config 'key=value ...'``; both the ServerApp and every ClientApp read it, so all
parties agree on the model, the training schedule and the data schema. Keys are the CLI option names
of ``rhode train`` (``learning-rate``, ``local-steps``, ...) plus the deployment's own (``mode``,
``server-dir``, ``n-parties``, ``resume``, ``round-timeout``, ``connect-timeout``, ``query-in``,
``query-out``, ``refresh-margin``).

The node configuration (``flower-supernode --node-config``) says where a data holder's data and state
are: ``party-index`` (0 is the lead), ``data`` (its CSV file) and ``storage`` (its state directory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rhode.errors import ParameterError
from rhode.federated.config import RunConfig, run_fingerprint

if TYPE_CHECKING:  # the ClientApp relay reads node configurations without loading OpenFHE
    from rhode.federated.budget import BudgetPlan
    from rhode.mhe import CkksParams

MODES = ("train", "predict")

# run-config key -> RunConfig field: every option of `rhode train` that is not about where the data
# comes from (the data holders bring their own CSVs), under its CLI name (learning_rate ->
# learning-rate); new RunConfig options are picked up automatically
_NOT_RUN_KEYS = {"data", "dataset", "parties", "partition", "target", "features", "max_rows", "extra",
                 "max_test_windows", "workers"}  # workers: the in-process engine's; each node is one holder
_RUN_FIELDS = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(RunConfig)
               if f.name not in _NOT_RUN_KEYS}


@dataclass(frozen=True)
class DeployConfig:
    """The deployment's run configuration, validated.

    Attributes:
        run: the model/training/data options as a :class:`RunConfig` (``data`` holds one placeholder
            name per data holder: the CSV files live on the data holders' machines).
        mode: ``train`` (collective keys, encrypted FedAvg, checkpoints) or ``predict`` (a querier's
            request against the trained model).
        server_dir: the aggregator's directory (public keys, checkpoint, run.json, rounds.jsonl).
        resume: continue the training in ``server_dir`` from its checkpoint and stored keys.
        round_timeout: seconds the aggregator waits for every data holder's answer in one round.
        connect_timeout: seconds it waits for all data holders to connect at the start.
        query_in, query_out: the querier's request and response files (mode ``predict``).
        refresh_margin: when a refresh round is due, live ciphertexts with at most this many levels
            left join it (the cipher backend's ``eager_margin``; fewer rounds for more ciphertexts).
        n_features: number of input features (inferred from the data holders' schema).
    """

    run: RunConfig
    mode: str = "train"
    server_dir: Path = Path("rhode-server")
    resume: bool = False
    round_timeout: float = 600.0
    connect_timeout: float = 120.0
    query_in: str = ""
    query_out: str = ""
    refresh_margin: int = 6

    @property
    def n_parties(self) -> int:
        return self.run.n_parties

    @property
    def budget(self) -> BudgetPlan:
        """What a deployment reveals: the statistics, a loss per iteration and ``query_batches`` querier
        batches (its training reveals no model and predicts nothing itself)."""
        from rhode.federated.budget import plan_budget

        return plan_budget(self.run.global_iterations, self.run.query_batches)

    @property
    def params(self) -> CkksParams:
        """The preset, its flooding sized for :attr:`budget`."""
        from rhode.federated.budget import budgeted
        from rhode.mhe import preset

        return budgeted(preset(self.run.preset), self.budget)

    def fingerprint(self) -> str:
        """What a resume must match (:func:`rhode.federated.config.run_fingerprint`)."""
        return run_fingerprint(self.run)

    @classmethod
    def from_run_config(cls, rc: Mapping) -> DeployConfig:
        """Build from Flower's ``context.run_config`` (unknown keys are ignored, bad values raise
        :class:`ParameterError` naming the key)."""
        def value(key, kind, default=None):
            if key not in rc:
                if default is None:
                    raise ParameterError(f"run config has no '{key}'; add it to [tool.flwr.app.config]")
                return default
            v = rc[key]
            if kind is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                raise ParameterError(f"run config '{key}' must be {kind.__name__}, got {v!r}")
            return v

        n = value("n-parties", int)
        if not 2 <= n <= 16:
            raise ParameterError(f"run config 'n-parties' must be between 2 and 16, got {n}")
        fields = {}
        for key, name in _RUN_FIELDS.items():
            if key in rc:
                fields[name] = rc[key]
        target = value("target", str, "")
        features = value("features", str, "")
        run = RunConfig(data=tuple(f"data-holder-{i}" for i in range(n)),
                        target=target or None,
                        features=tuple(f.strip() for f in features.split(",") if f.strip()) or None,
                        **fields).validate()
        if run.batch == 0:  # auto needs the holders' windows, which the aggregator does not see
            raise ParameterError("run config 'batch' is 0 (auto), which only rhode demo/train resolve: give "
                                 "the batch (e.g. 128 for h <= 8 on the default preset) in the run config")
        mode = value("mode", str, "train")
        if mode not in MODES:
            raise ParameterError(f"run config 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        server_dir = value("server-dir", str, "rhode-server")
        if not server_dir:
            raise ParameterError("run config 'server-dir' must name the aggregator's directory")
        rt = value("round-timeout", float, 600.0)
        ct = value("connect-timeout", float, 120.0)
        if rt <= 0 or ct <= 0:
            raise ParameterError("run config 'round-timeout' and 'connect-timeout' must be positive")
        margin = value("refresh-margin", int, 6)
        if margin < 0:
            raise ParameterError(f"run config 'refresh-margin' must be >= 0, got {margin}")
        return cls(run, mode, Path(server_dir), value("resume", bool, False), rt, ct,
                   value("query-in", str, ""), value("query-out", str, ""), margin)


@dataclass(frozen=True)
class NodeConfig:
    """A data holder's node configuration.

    Attributes:
        party_index: its index (0 is the lead), unique in the federation.
        data: its CSV file (may be empty on a node that only answers protocol steps).
        storage: its state directory (secret share 0600, public keys, worker).
    """

    party_index: int
    data: str
    storage: Path

    @classmethod
    def from_node_config(cls, nc: Mapping) -> NodeConfig:
        idx = nc.get("party-index", nc.get("partition-id"))
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < 16:
            raise ParameterError(
                "node config 'party-index' must be an integer from 0 to 15 (0 is the lead); start the "
                "SuperNode with --node-config \"party-index=0 data='...' storage='...'\"")
        storage = nc.get("storage")
        if not isinstance(storage, str) or not storage:
            raise ParameterError("node config 'storage' must name this data holder's state directory")
        data = nc.get("data", "")
        if not isinstance(data, str):
            raise ParameterError("node config 'data' must be the path of this data holder's CSV file")
        return cls(idx, data, Path(storage))
