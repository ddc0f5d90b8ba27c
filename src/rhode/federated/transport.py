"""How the aggregator reaches the data holders: one round trip per protocol step.

:class:`Transport` is the interface the aggregator is written against: ``discover`` maps party indices
to data holders with a first broadcast, ``exchange`` sends one payload to each of some data holders
and returns their answers, all in one round. Implementations:

* :class:`LocalTransport` - every data holder's step handler called in this process, payloads handed
  over as objects (no serialization): the sequential in-process engine.
* the same :class:`LocalTransport` with ``TRAIN`` and ``RESUME`` handed to every holder at once, whose
  jobs run in worker processes (:mod:`rhode.federated.workers`): the parallel in-process engine.
* :class:`rhode.federated.flower.transport.FlowerTransport` - Flower's Message API: the deployment.

All of them account for every round (step, seconds, bytes to and from each party) in ``rounds``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rhode.errors import HolderUnavailableError, ProtocolError, RhodeError
from rhode.federated.payload import ERROR_KIND_KEY, Payload, error_payload
from rhode.federated.schema import Field, Step

Handler = Callable[[Step, Payload], Payload]


@dataclass
class RoundRecord:
    """Accounting of one round trip."""

    step: str
    seconds: float
    sent: dict[int, int] = field(default_factory=dict)  # party -> bytes sent to it
    received: dict[int, int] = field(default_factory=dict)  # party -> bytes it sent back
    tag: str = ""
    holders: dict[int, dict[str, float]] = field(default_factory=dict)  # party -> its seconds, by part

    def to_dict(self) -> dict:
        out = {
            "step": self.step,
            "seconds": round(self.seconds, 3),
            "tag": self.tag,
            "sent": {str(k): v for k, v in self.sent.items()},
            "received": {str(k): v for k, v in self.received.items()},
        }
        if self.holders:
            out["holders"] = {str(k): {n: round(v, 4) for n, v in t.items()} for k, t in self.holders.items()}
        return out


class Transport:
    """Round trips between the aggregator and the data holders (see module docstring).

    Attributes:
        keeps_public_keys: whether the data holders store the public context and evaluation keys
            themselves (Flower nodes do); otherwise a resumed run hands them over in ``HELLO``.
    """

    keeps_public_keys = False

    def __init__(self) -> None:
        self.rounds: list[RoundRecord] = []
        self.on_round: Callable[[RoundRecord], None] | None = None
        self.tag = ""

    def discover(self, step: Step, payload: Payload, n_parties: int, timeout: float,
                 expected: Iterable[int] | None = None) -> dict[int, Payload]:
        """Broadcast ``payload`` as ``step`` to every connected data holder; map each answer's
        ``party`` to its sender. Returns party -> answer once every party of ``expected`` (default: all
        ``n_parties``) answered."""
        raise NotImplementedError

    def exchange(self, step: Step, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        """Send ``requests[party]`` as ``step`` to each party; return party -> answer."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the transport holds (worker processes); idempotent."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _record(self, step: Step, t0: float, sent: dict[int, int], received: dict[int, int],
                answers: dict[int, Payload] | None = None) -> None:
        """Account one round: bytes sent to and received from each party (and, from ``answers``, the
        seconds each holder reported spending on it: :func:`holder_timing`)."""
        timing = {k: holder_timing(p) for k, p in (answers or {}).items()}
        rec = RoundRecord(step.value, time.monotonic() - t0, sent, received, self.tag,
                          {k: t for k, t in timing.items() if t})
        self.rounds.append(rec)
        if self.on_round is not None:
            self.on_round(rec)


def holder_timing(p: Payload) -> dict[str, float]:
    """The seconds a holder reported in its answer's TIMING field, by part ({} if none or malformed)."""
    try:
        t = json.loads(p.config.get(Field.TIMING.value, "{}"))
        return {str(k): float(v) for k, v in t.items()} if isinstance(t, dict) else {}
    except (TypeError, ValueError, AttributeError):
        return {}


def check_answers(step: Step, answers: dict[int, Payload], expected: Iterable[int]) -> dict[int, Payload]:
    """Raise a :class:`ProtocolError` for missing parties and for answers that carry a rhode error."""
    for party in sorted(expected):
        p = answers.get(party)
        if p is None:
            raise HolderUnavailableError(f"data holder {party} did not answer '{step.value}'", [party])
        if p.error is not None:
            raise ProtocolError(
                f"data holder {party} rejected '{step.value}': "
                f"{p.config.get(ERROR_KIND_KEY, 'error')}: {p.error}"
            )
        if p.config.get(Field.PARTY.value) != party:
            raise ProtocolError(
                f"data holder {party} answered '{step.value}' as party {p.config.get(Field.PARTY.value)!r}"
            )
    return answers


def answer(handler: Handler, step: Step, payload: Payload) -> Payload:
    """``handler(step, payload)``, with a rhode error turned into an error answer (as a node does)."""
    try:
        return handler(step, payload)
    except RhodeError as exc:
        return error_payload(exc)


class LocalTransport(Transport):
    """Every data holder's handler called in this process; payloads cross as objects.

    Args:
        handlers: party -> ``(step, payload) -> payload`` (e.g. :meth:`HolderSide.handle`).
        measure_bytes: account each round's bytes as its messages would weigh on the wire.
        concurrent: steps whose handlers run at the same time, one thread each (the parallel engine's
            ``TRAIN`` and ``RESUME``, whose handlers wait for their holder's worker process).
    """

    def __init__(self, handlers: dict[int, Handler], measure_bytes: bool = True,
                 concurrent: frozenset[Step] = frozenset()) -> None:
        super().__init__()
        self.handlers = handlers
        self.measure_bytes = measure_bytes
        self.concurrent = concurrent
        self._pool: ThreadPoolExecutor | None = None

    def discover(self, step: Step, payload: Payload, n_parties: int, timeout: float,
                 expected: Iterable[int] | None = None) -> dict[int, Payload]:
        parties = range(n_parties) if expected is None else expected
        return self.exchange(step, dict.fromkeys(parties, payload), timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def exchange(self, step: Step, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        missing = sorted(set(requests) - set(self.handlers))
        if missing:
            raise HolderUnavailableError(
                f"data holder(s) {', '.join(map(str, missing))} did not answer '{step.value}' "
                "(not connected)", missing)
        if step in self.concurrent and len(requests) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.handlers), thread_name_prefix="holder")
            futures = {party: self._pool.submit(answer, self.handlers[party], step, p)
                       for party, p in requests.items()}
            answers = {party: f.result() for party, f in futures.items()}
        else:
            answers = {party: answer(self.handlers[party], step, p) for party, p in requests.items()}
        self._record(step, t0, _sizes(requests, self.measure_bytes), _sizes(answers, self.measure_bytes))
        return check_answers(step, answers, requests)


def _sizes(payloads: dict[int, Payload], measure: bool) -> dict[int, int]:
    return {k: v.nbytes() if measure else 0 for k, v in payloads.items()}
