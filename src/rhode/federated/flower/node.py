"""A data holder's state on a Flower node: :class:`NodeState`, kept in its storage directory.

Every Flower message may run in a fresh ``flwr-clientapp`` process, so the holder's steps
(:mod:`rhode.federated.holder`) read the public context, the evaluation keys and the secret share from
the node's :class:`~rhode.federated.flower.store.NodeStore`, and its jobs run in the node-local worker
process (:mod:`rhode.federated.flower.worker`), which outlives the messages.
"""

from __future__ import annotations

import json

from rhode.data import load_csv
from rhode.errors import DataError, ProtocolError
from rhode.federated.dataprep import split_holder
from rhode.federated.flower import link
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import CONTEXT, EVAL_KEYS, NodeStore
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, WorkerOp
from rhode.federated.state import HolderSettings, HolderState, install_eval_keys
from rhode.mhe import MheContext, Party
from rhode.mhe import serial as S


class NodeState(HolderState):
    """One data holder's node: its configuration, storage, context and secret share.

    Args:
        node: the node configuration (party index, CSV, storage directory).
        dc: the deployment's run configuration.
        watch_pid: the process the node's training worker must not outlive (the SuperExec).
    """

    def __init__(self, node: NodeConfig, dc: DeployConfig, watch_pid: int = 0) -> None:
        super().__init__(node.party_index, HolderSettings(dc.run, dc.fingerprint(), dc.refresh_margin))
        self.node = node
        self.dc = dc
        self.store = NodeStore(node.storage)
        self.watch_pid = watch_pid
        self._series = None
        self._ctx: MheContext | None = None

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
            self._ctx = S.context_from_bytes(self.store.read(CONTEXT, "public context"))
        return self._ctx

    def new_epoch(self, p: Payload) -> MheContext:
        data = p.blob(Field.CONTEXT.value)
        ctx = S.context_from_bytes(data)  # validated before anything is forgotten
        self.store.kill_worker()  # a worker holding older keys must not serve this epoch
        (self.store.root / EVAL_KEYS).unlink(missing_ok=True)
        self.store.secret_path.unlink(missing_ok=True)
        self.store.write(CONTEXT, data)
        self._ctx = ctx
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
        self.store.kill_worker()
        return ctx

    def load_stored_eval_keys(self) -> MheContext:
        """The context with the evaluation keys of this node's storage installed (the worker)."""
        ctx = self.context()
        install_eval_keys(
            ctx, Payload({}, {Field.EVAL_KEYS.value: self.store.read(EVAL_KEYS, "evaluation keys")})
        )
        return ctx

    def party(self) -> Party:
        if not self.store.secret_path.exists():
            raise ProtocolError(
                f"data holder {self.index} has no secret share in {self.store.root}: it did not take part "
                "in key generation (start a new run), or its node config 'storage' is wrong"
            )
        return Party.load(self.context(), self.store.secret_path)

    def save_party(self, party: Party) -> None:
        party.save(self.store.secret_path)

    # -- jobs --------------------------------------------------------------------------------------------
    def jobs(self) -> WorkerJobs:
        return WorkerJobs(self)


class WorkerJobs:
    """A node's jobs, run by its worker process (started on demand)."""

    def __init__(self, state: NodeState) -> None:
        self.state = state

    def start(self, p: Payload) -> Payload:
        st = self.state
        req = Payload(
            {
                **p.config,
                Field.OP.value: WorkerOp.START.value,
                Field.KEY_TAG.value: st.context().key_tag,
                Field.RUN_CONFIG.value: json.dumps(st.run.to_dict()),
                Field.NODE_CONFIG.value: json.dumps(
                    {"party-index": st.index, "data": st.node.data, "storage": str(st.node.storage)}
                ),
            },
            dict(p.blobs),
        )
        return link.call(st.store, req, st.watch_pid, restart_if_stale=True)

    def resume(self, p: Payload) -> Payload:
        req = Payload({**p.config, Field.OP.value: WorkerOp.RESUME.value}, dict(p.blobs))
        return link.call(self.state.store, req, self.state.watch_pid, restart_if_stale=False)
