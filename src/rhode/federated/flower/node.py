"""A data holder's state on a Flower node: :class:`NodeState`, kept in its storage directory and in the
memory of the node's holder service.

Every Flower message runs in a fresh ``flwr-clientapp`` process, so the ClientApp only relays each
message to the node-local holder service (:mod:`rhode.federated.flower.worker`), which outlives the
messages and keeps one :class:`NodeState`: the public context, the evaluation keys and the secret share
are read from the node's :class:`~rhode.federated.flower.store.NodeStore` once (the share from its 0600
file, never sent anywhere) and kept in the service's memory; the holder's jobs run in that process too.
What a resumed service needs (a new process after a restart of the node) is always on disk.
"""

from __future__ import annotations

import time

from rhode.data import load_csv
from rhode.errors import DataError, ProtocolError
from rhode.federated.dataprep import split_holder
from rhode.federated.files import atomic_write
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import CONTEXT, EVAL_KEYS, NodeStore
from rhode.federated.payload import Payload
from rhode.federated.schema import Field
from rhode.federated.state import (
    HolderSettings,
    HolderState,
    LocalJobs,
    install_eval_keys,
    install_rotation_keys,
)
from rhode.mhe import MheContext, Party
from rhode.mhe import serial as S

#: the prefix of the t-out-of-N files in a node's storage (sealing key, pieces, adopted shares)
SECRETS_PREFIX = "threshold-"


class NodeState(HolderState):
    """One data holder's node: its configuration, storage, context and secret share.

    Args:
        node: the node configuration (party index, CSV, storage directory).
        dc: the deployment's run configuration.
    """

    def __init__(self, node: NodeConfig, dc: DeployConfig) -> None:
        super().__init__(node.party_index, HolderSettings(dc.run, dc.fingerprint(), dc.refresh_margin))
        self.node = node
        self.dc = dc
        self.store = NodeStore(node.storage)
        self._series = None
        self._ctx: MheContext | None = None
        self._party: Party | None = None
        self._eval_keys = False  # the stored evaluation keys are installed in the context
        self._jobs = LocalJobs(self)
        self.load_seconds = 0.0  # spent reading the context, evaluation keys and secret share from storage

    # -- data ----------------------------------------------------------------------------------------
    def train_series(self):
        """This holder's training part, split in time order as the in-process engines do."""
        if self._series is None:
            self._series = self._load()
        return self._series

    def _load(self):
        run = self.run
        if not self.node.data:
            raise DataError(f"data holder {self.index} has no data: set node config data='/path/file.csv'")
        if run.target is None:
            raise DataError("run config 'target' is empty: name the column to forecast")
        s = load_csv(self.node.data, run.target, run.features)
        return split_holder(s, run, self.index)[0]  # time-ordered, differenced when run.difference

    # -- keys ------------------------------------------------------------------------------------------
    def context(self) -> MheContext:
        """The node's stored context, read once per state (a node's state is its own: another
        holder's in the same process, as in tests, must not see this one's joint key early)."""
        if self._ctx is None:
            t0 = time.perf_counter()
            self._ctx = S.context_from_bytes(self.store.read(CONTEXT, "public context"))
            self.load_seconds += time.perf_counter() - t0
        return self._ctx

    def new_epoch(self, p: Payload) -> MheContext:
        data = p.blob(Field.CONTEXT.value)
        ctx = S.context_from_bytes(data)  # validated before anything is forgotten
        self._jobs.close()  # a job on older keys must not go on in this epoch
        (self.store.root / EVAL_KEYS).unlink(missing_ok=True)
        self.store.secret_path.unlink(missing_ok=True)
        for path in self.store.root.glob(f"{SECRETS_PREFIX}*"):  # the previous epoch's pieces and keys
            path.unlink()
        self._adopted = {}
        self.store.write(CONTEXT, data)
        self._ctx, self._party, self._eval_keys = ctx, None, False
        return ctx

    def save_context(self) -> None:
        ctx = self.context()
        self.store.write(CONTEXT, S.context_to_bytes(ctx))

    def attach(self, p: Payload) -> MheContext:
        if not self.store.has(EVAL_KEYS):
            raise ProtocolError(
                f"data holder {self.index} has no evaluation keys; start a new run (key generation)"
            )
        return self.context()

    def install_eval_keys(self, p: Payload) -> MheContext:
        ctx = install_eval_keys(self.context(), p)  # validates before storing
        self.store.write(EVAL_KEYS, p.blob(Field.EVAL_KEYS.value))
        self._jobs.close()
        self._eval_keys = True
        return ctx

    def install_rotation_keys(self, keys) -> MheContext:
        ctx = install_rotation_keys(self.job_context(), keys)
        self.store.write(EVAL_KEYS, S.eval_keys_to_bytes(ctx))
        self.store.write(CONTEXT, S.context_to_bytes(ctx))
        self._jobs.close()
        return ctx

    def put_secret(self, name: str, data: bytes) -> None:
        atomic_write(self.store.root / f"{SECRETS_PREFIX}{name}", data)  # 0600

    def get_secret(self, name: str) -> bytes | None:
        path = self.store.root / f"{SECRETS_PREFIX}{name}"
        return path.read_bytes() if path.exists() else None

    def job_context(self) -> MheContext:
        """The context with the joint evaluation keys installed (read from storage once)."""
        if not self._eval_keys:
            ctx, t0 = self.context(), time.perf_counter()
            install_eval_keys(
                ctx, Payload({}, {Field.EVAL_KEYS.value: self.store.read(EVAL_KEYS, "evaluation keys")}))
            self._eval_keys = True
            self.load_seconds += time.perf_counter() - t0
        return self.context()

    def party(self) -> Party:
        if self._party is None:
            if not self.store.secret_path.exists():
                raise ProtocolError(
                    f"data holder {self.index} has no secret share in {self.store.root}: it did not take "
                    "part in key generation (start a new run), or its node config 'storage' is wrong"
                )
            ctx, t0 = self.context(), time.perf_counter()
            self._party = Party.load(ctx, self.store.secret_path)
            self.load_seconds += time.perf_counter() - t0
        return self._party

    def save_party(self, party: Party) -> None:
        party.save(self.store.secret_path)
        self._party = party

    # -- jobs --------------------------------------------------------------------------------------------
    def jobs(self) -> LocalJobs:
        """The holder's jobs, in this (the service's) process; they use the evaluation keys."""
        self.job_context()
        return self._jobs

    def close(self) -> None:
        """Abandon a paused job (the service replaces this state)."""
        self._jobs.close()
