"""What a data holder keeps between protocol steps: :class:`HolderState`.

The holder's steps (:mod:`rhode.federated.holder`) are written against this small interface; two
implementations keep it:

* :class:`MemoryState` - in memory, in the process that runs the data holder (the in-process engines;
  with ``parties_dir`` its secret share is also written to ``party-<i>.key``, mode 0600, for resume);
* :class:`rhode.federated.flower.node.NodeState` - a node directory on Flower, where every message
  may run in a fresh process.

Several data holders in one process (in-process engines, a worker process) share one public context
and one copy of the evaluation keys (OpenFHE keeps them in process-wide maps keyed by tag).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhode.data import Normalizer, make_windows
from rhode.errors import ProtocolError
from rhode.federated import codec as K
from rhode.federated.config import RunConfig
from rhode.federated.files import atomic_write
from rhode.federated.job import JobRunner
from rhode.federated.payload import Payload
from rhode.federated.schema import Field
from rhode.federated.work import job_work, pending_answer
from rhode.mhe import MheContext, Party
from rhode.mhe import serial as S
from rhode.mhe.protocols import rotation
from rhode.nn.model import RecurrentModel

#: where a holder keeps its X25519 sealing key, the others' public sealing keys, the shares it adopted
SEALING_KEY, PEERS, ADOPTED = "sealing.key", "peers.json", "adopted.json"

_CONTEXTS: dict[bytes, MheContext] = {}  # this process's contexts, by digest of their bytes
_EVAL_KEYS_LOADED: set[str] = set()  # joint key tags whose evaluation keys this process holds


def shared_context(data: bytes) -> MheContext:
    """The context of ``data``, read once per process (every holder here then shares it)."""
    key = hashlib.blake2b(data, digest_size=16).digest()
    if key not in _CONTEXTS:
        _CONTEXTS[key] = S.context_from_bytes(data)
    return _CONTEXTS[key]


def install_eval_keys(ctx: MheContext, p: Payload) -> MheContext:
    """Install the joint evaluation keys of blob EVAL_KEYS in ``ctx`` (once per process and key)."""
    if p.take(Field.EVAL_KEYS.value, lambda b: b) is ctx:
        if not ctx.has_relin_key:
            raise ProtocolError("the aggregator has no joint evaluation keys yet")
        return ctx  # in process: the aggregator's context, which holds them
    data = p.blob(Field.EVAL_KEYS.value)
    if ctx.key_tag not in _EVAL_KEYS_LOADED or not ctx.has_relin_key:
        S.load_eval_keys(ctx, data)  # validates before installing
        _EVAL_KEYS_LOADED.add(ctx.key_tag)
    return ctx


def install_rotation_keys(ctx: MheContext, keys) -> MheContext:
    """Install the joint rotation keys ``keys`` (a summed
    :class:`~rhode.mhe.protocols.rotation.RotationShare`) in ``ctx``."""
    rotation.finalize(ctx, keys)
    return ctx


@dataclass(frozen=True)
class HolderSettings:
    """What every data holder of a run agrees on with the aggregator.

    Attributes:
        run: the run configuration (model, schedule, data schema).
        fingerprint: what a step's ``fingerprint`` must match.
        margin: the cipher backend's ``eager_margin`` in the holder's jobs (None: refresh only what
            needs it).
    """

    run: RunConfig
    fingerprint: str
    margin: int | None = None


class _Hook:
    """A backend's refresh hook that pauses the job running now."""

    def __init__(self) -> None:
        self.pause = None

    def __call__(self, cts: list) -> list:
        if self.pause is None:
            raise ProtocolError("a refresh was needed outside a job")
        return self.pause(cts)


class HolderState:
    """The interface (see module docstring); subclasses provide the storage."""

    def __init__(self, index: int, settings: HolderSettings) -> None:
        self.index = index
        self.settings = settings
        self._windows: tuple[str, tuple] | None = None
        self._backends: dict = {}
        self._hook = _Hook()
        self._adopted: dict[int, Party] = {}
        #: (tag, CRPs) of the last REFRESH this holder answered: the c1 parts of the ciphertexts the
        #: next RESUME returns (refresh.rejoin), kept in memory only
        self.last_refresh: tuple[str, list] | None = None

    @property
    def run(self) -> RunConfig:
        return self.settings.run

    @property
    def fingerprint(self) -> str:
        return self.settings.fingerprint

    # -- data ----------------------------------------------------------------------------------------
    def train_series(self):
        """This holder's training part (a :class:`~rhode.data.TimeSeries`)."""
        raise NotImplementedError

    def windows(self, stats) -> tuple[np.ndarray, np.ndarray]:
        """Normalized training windows X (n, T, d), Y (n, 1) under the global statistics."""
        key = repr((stats.count, stats.sum.tolist(), stats.sumsq.tolist()))
        if self._windows is None or self._windows[0] != key:
            norm = Normalizer.from_stats(stats)
            self._windows = (
                key,
                make_windows(norm.normalize(self.train_series()), self.run.timesteps, self.run.horizon),
            )
        return self._windows[1]

    # -- keys ------------------------------------------------------------------------------------------
    def context(self) -> MheContext:
        raise NotImplementedError

    def new_epoch(self, p: Payload) -> MheContext:
        """SETUP: forget the previous keys, keep the context of blob CONTEXT."""
        raise NotImplementedError

    def save_context(self) -> None:
        """The context now holds the joint public key (a node stores it)."""

    def attach(self, p: Payload) -> MheContext:
        """HELLO of a resumed run: the context (and evaluation keys, if the request has them)."""
        raise NotImplementedError

    def install_eval_keys(self, p: Payload) -> MheContext:
        return install_eval_keys(self.context(), p)

    def install_rotation_keys(self, keys) -> MheContext:
        """Add one chunk of joint rotation keys (a :class:`~rhode.mhe.protocols.rotation.RotationShare`
        summed over every holder) to the context (a node stores them with its evaluation keys)."""
        return install_rotation_keys(self.context(), keys)

    def party(self) -> Party:
        raise NotImplementedError

    def save_party(self, party: Party) -> None:
        raise NotImplementedError

    # -- t-out-of-N: sealing key, the pieces this holder keeps, the shares it adopted ------------------
    def put_secret(self, name: str, data: bytes) -> None:
        """Keep secret material ``name`` (0600 wherever it is stored); until the next key epoch."""
        raise NotImplementedError

    def get_secret(self, name: str) -> bytes | None:
        """What :meth:`put_secret` kept under ``name`` (None if nothing)."""
        raise NotImplementedError

    def need_secret(self, name: str, what: str) -> bytes:
        data = self.get_secret(name)
        if data is None:
            raise ProtocolError(f"data holder {self.index} has no {what}; it was made at key generation "
                                "with --threshold (start a new run with it)")
        return data

    def adopt(self, party: Party) -> None:
        """Answer for the dropped holder ``party.index`` from now on (its rebuilt share kept 0600)."""
        self.put_secret(f"adopted-{party.index}.key", party.secret_bytes())
        indices = sorted({*self._adopted_indices(), party.index})
        self.put_secret(ADOPTED, json.dumps(indices).encode())
        self._adopted[party.index] = party

    def _adopted_indices(self) -> list[int]:
        raw = self.get_secret(ADOPTED)
        return [int(i) for i in json.loads(raw)] if raw else []

    def adopted(self, indices: list[int]) -> list[Party]:
        """The rebuilt shares of the dropped holders ``indices`` (ProtocolError for one not adopted here)."""
        for d in indices:
            if d not in self._adopted:
                if d not in self._adopted_indices():
                    raise ProtocolError(f"data holder {self.index} was asked to answer for data holder {d}, "
                                        "whose share it did not rebuild")
                self._adopted[d] = Party.from_secret_bytes(
                    self.context(), self.need_secret(f"adopted-{d}.key", f"adopted share of holder {d}"))
        return [self._adopted[d] for d in indices]

    # -- jobs -------------------------------------------------------------------------------------------
    def backend(self, model: RecurrentModel, pause):
        """This holder's cipher backend for ``model`` (made once), its refresh hook pausing via ``pause``."""
        key = (model.config, self.run.batch)
        if key not in self._backends:
            be = K.backend_for(self.context(), model, self.run.batch, self._hook, self.settings.margin)
            be.prepare(model.param_shapes)
            self._backends = {key: be}
        self._hook.pause = pause
        return self._backends[key]

    def jobs(self):
        """Where this holder's jobs run (:class:`LocalJobs` or a node's worker)."""
        raise NotImplementedError


class LocalJobs:
    """A holder's jobs in this process, in a :class:`~rhode.federated.job.JobRunner`."""

    def __init__(self, state: HolderState) -> None:
        self.state = state
        self.runner = JobRunner()

    def start(self, p: Payload) -> Payload:
        job_id = p.get(Field.JOB.value, str)
        work = job_work(self.state, p)
        return self.runner.start(job_id, work, pending_answer(self.state.context(), job_id, work.extras))

    def resume(self, p: Payload) -> Payload:
        ctx = self.state.context()
        return self.runner.resume(
            p.get(Field.JOB.value, str), lambda count: K.take_cts(ctx, p, Field.CTS.value, count=count)
        )

    def close(self) -> None:
        self.runner.abort()


class MemoryState(HolderState):
    """A data holder in this process: its training series in memory, its secret share in memory and
    (with ``parties_dir``) in ``parties_dir/party-<i>.key`` (0600). ``jobs(state)`` makes where its jobs
    run (default: :class:`LocalJobs`, in this process; the parallel engine: a worker process)."""

    def __init__(self, index: int, settings: HolderSettings, series,
                 parties_dir: str | os.PathLike | None = None, jobs=None) -> None:
        super().__init__(index, settings)
        self.series = series
        self.parties_dir = Path(parties_dir) if parties_dir is not None else None
        self._ctx: MheContext | None = None
        self._party: Party | None = None
        self._secrets: dict[str, bytes] = {}
        self._jobs = LocalJobs(self) if jobs is None else jobs(self)

    def train_series(self):
        return self.series

    def context(self) -> MheContext:
        if self._ctx is None:
            raise ProtocolError(f"data holder {self.index} has no keys yet (no setup or hello)")
        return self._ctx

    def _take_context(self, p: Payload) -> MheContext:
        return p.take(Field.CONTEXT.value, shared_context)

    def new_epoch(self, p: Payload) -> MheContext:
        self._jobs.close()
        self._party, self._backends, self._secrets, self._adopted = None, {}, {}, {}
        self._ctx = self._take_context(p)
        return self._ctx

    def put_secret(self, name: str, data: bytes) -> None:
        self._secrets[name] = bytes(data)
        if self.parties_dir is not None:
            self.parties_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(self.parties_dir / f"holder-{self.index}-{name}", data)

    def get_secret(self, name: str) -> bytes | None:
        if name not in self._secrets and self.parties_dir is not None:
            path = self.parties_dir / f"holder-{self.index}-{name}"
            if path.exists():
                self._secrets[name] = path.read_bytes()
        return self._secrets.get(name)

    def attach(self, p: Payload) -> MheContext:
        if Field.CONTEXT.value in p.blobs:
            self._ctx = self._take_context(p)
            self.install_eval_keys(p)
        return self.context()

    def use_keys(self, ctx: MheContext) -> None:
        """Work on ``ctx`` (joint public and evaluation keys installed): a training worker's holder,
        which holds no secret share."""
        self._ctx, self._backends = ctx, {}

    def party(self) -> Party:
        if self._party is None:
            path = self._secret_path()
            if path is None or not path.exists():
                where = f" ({path} is missing)" if path is not None else ""
                raise ProtocolError(f"data holder {self.index} has no secret share{where}; restore that file "
                                    "from a backup or start a new run")
            self._party = Party.load(self.context(), path)
        return self._party

    def save_party(self, party: Party) -> None:
        self._party = party
        path = self._secret_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            party.save(path)

    def _secret_path(self) -> Path | None:
        return self.parties_dir / f"party-{self.index}.key" if self.parties_dir is not None else None

    def jobs(self) -> LocalJobs:
        return self._jobs
