"""How the aggregator reaches the data holders: one round trip per protocol step.

:class:`Transport` is the interface the aggregator is written against: ``discover`` maps party
indices to data holders with a first broadcast, ``exchange`` sends one payload to each of some data
holders and returns their answers, all in one round. Two implementations:

* :class:`FlowerTransport` - Flower's Message API (ServerApp ``Grid``): raw-bytes ``ArrayRecord``
  payloads, own push/pull loop (0.1 s polling instead of ``send_and_receive``'s 3 s), a timeout per
  round that names every data holder that did not answer.
* :class:`DirectTransport` - calls every data holder's step function in this process (the same code
  the ClientApp runs, with real node-local storage and workers): protocol tests without Flower.

Both account for every round (step, seconds, bytes to and from each party) in ``rounds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rhode.errors import ProtocolError, RhodeError
from rhode.federated.flower.wire import ERROR_KIND_KEY, Payload, from_recorddict, to_recorddict

log = logging.getLogger("rhode.flower")


@dataclass
class RoundRecord:
    """Accounting of one round trip."""

    step: str
    seconds: float
    sent: dict[int, int] = field(default_factory=dict)      # party -> bytes sent to it
    received: dict[int, int] = field(default_factory=dict)  # party -> bytes it sent back
    tag: str = ""

    def to_dict(self) -> dict:
        return {"step": self.step, "seconds": round(self.seconds, 3), "tag": self.tag,
                "sent": {str(k): v for k, v in self.sent.items()},
                "received": {str(k): v for k, v in self.received.items()}}


class Transport:
    """Round trips between the aggregator and the data holders (see module docstring)."""

    def __init__(self) -> None:
        self.rounds: list[RoundRecord] = []
        self.on_round: Callable[[RoundRecord], None] | None = None
        self.tag = ""

    def discover(self, step: str, payload: Payload, n_parties: int, timeout: float) -> dict[int, Payload]:
        """Broadcast ``payload`` as ``step`` to every connected data holder; map each answer's
        ``party`` to its sender. Returns party -> answer once all ``n_parties`` answered."""
        raise NotImplementedError

    def exchange(self, step: str, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        """Send ``requests[party]`` as ``step`` to each party; return party -> answer."""
        raise NotImplementedError

    def _record(self, rec: RoundRecord) -> None:
        rec.tag = self.tag
        self.rounds.append(rec)
        if self.on_round is not None:
            self.on_round(rec)


def check_answers(step: str, answers: dict[int, Payload], expected: Iterable[int]) -> dict[int, Payload]:
    """Raise a :class:`ProtocolError` for missing parties and for answers that carry a rhode error."""
    expected = sorted(expected)
    for party in expected:
        p = answers.get(party)
        if p is not None and p.error is not None:
            raise ProtocolError(f"data holder {party} rejected '{step}': "
                                f"{p.config.get(ERROR_KIND_KEY, 'error')}: {p.error}")
        if p is not None and p.config.get("party") != party:
            raise ProtocolError(f"data holder {party} answered '{step}' as party {p.config.get('party')!r}")
    return answers


class FlowerTransport(Transport):
    """Rounds over a Flower ``Grid`` (the ServerApp's connection to the SuperLink)."""

    POLL = 0.1
    RETRY = 2.0  # seconds before a node that answered discovery with a Flower error is asked again

    def __init__(self, grid) -> None:
        super().__init__()
        self.grid = grid
        self.nodes: dict[int, int] = {}  # party -> node id

    def _message(self, node_id: int, step: str, payload: Payload, group: str):
        from flwr.app import Message
        return Message(to_recorddict(payload), dst_node_id=node_id, message_type=step, group_id=group)

    def discover(self, step: str, payload: Payload, n_parties: int, timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        deadline = t0 + timeout
        asked: dict[str, int] = {}  # message id -> node id, until it answers
        contacted: set[int] = set()  # asked once; again after RETRY s if Flower answered with an error
        answers: dict[int, Payload] = {}
        nodes: dict[int, int] = {}
        unavailable: dict[int, str] = {}  # node id -> Flower's error (e.g. a stale registration)
        retry_at: dict[int, float] = {}
        sent_bytes = payload.nbytes()
        while True:
            for nid in self.grid.get_node_ids():
                if nid in unavailable and time.monotonic() >= retry_at.get(nid, 0.0):
                    contacted.discard(nid)  # ask again: it may have come back
                if nid not in contacted:
                    ids = list(self.grid.push_messages([self._message(nid, step, payload, self.tag)]))
                    if ids and ids[0]:
                        asked[ids[0]] = nid
                        contacted.add(nid)
            for msg in self._pull(list(asked)):
                nid = asked.pop(msg.metadata.reply_to_message_id, None)
                if nid is None:
                    continue
                if msg.has_error():
                    # not fatal while discovering: a SuperNode that was restarted can leave its old
                    # registration behind until the SuperLink expires it; the holder answers from its
                    # new node (and if it never does, the deadline below names it)
                    unavailable[nid] = str(msg.error.reason)
                    retry_at[nid] = time.monotonic() + self.RETRY
                    continue
                p = self._decode(step, msg, f"node {nid}")
                party = p.config.get("party")
                if p.error is not None:
                    raise ProtocolError(f"the data holder on node {nid} rejected '{step}': "
                                        f"{p.config.get(ERROR_KIND_KEY, 'error')}: {p.error}")
                if not isinstance(party, int) or isinstance(party, bool) or not 0 <= party < n_parties:
                    raise ProtocolError(f"node {nid} answered '{step}' with party index {party!r}; "
                                        f"expected 0 to {n_parties - 1} (node config party-index)")
                if party in nodes and nodes[party] != nid:
                    raise ProtocolError(f"nodes {nodes[party]} and {nid} both claim party index {party}; "
                                        "give every SuperNode its own party-index")
                nodes[party], answers[party] = nid, p
                unavailable.pop(nid, None)
            if len(answers) == n_parties:
                break
            if time.monotonic() > deadline:
                missing = sorted(set(range(n_parties)) - set(answers))
                raise ProtocolError(
                    f"data holder(s) {', '.join(map(str, missing))} did not answer '{step}' within "
                    f"{timeout:.0f} s ({len(answers)} of {n_parties} connected and answered"
                    + "".join(f"; node {nid}: {why}" for nid, why in sorted(unavailable.items()))
                    + "); start their SuperNodes (node config party-index) or raise connect-timeout")
            time.sleep(self.POLL)
        self.nodes = nodes
        self._record(RoundRecord(step, time.monotonic() - t0, dict.fromkeys(answers, sent_bytes),
                                 {k: v.nbytes() for k, v in answers.items()}))
        return answers

    def exchange(self, step: str, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        msgs = [self._message(self.nodes[party], step, p, self.tag) for party, p in requests.items()]
        ids = list(self.grid.push_messages(msgs))
        pending = {mid: party for mid, party in zip(ids, requests) if mid}
        if len(pending) != len(requests):
            failed = sorted(set(requests) - set(pending.values()))
            raise ProtocolError(f"the SuperLink refused '{step}' for data holder(s) {failed}")
        answers: dict[int, Payload] = {}
        deadline = t0 + timeout
        while pending:
            for msg in self._pull(list(pending)):
                party = pending.pop(msg.metadata.reply_to_message_id, None)
                if party is not None:
                    who = f"data holder {party} (node {self.nodes[party]})"
                    answers[party] = self._decode(step, msg, who)
            if not pending:
                break
            if time.monotonic() > deadline:
                missing = sorted(pending.values())
                raise ProtocolError(
                    f"data holder(s) {', '.join(map(str, missing))} (node "
                    f"{', '.join(str(self.nodes[m]) for m in missing)}) did not answer '{step}' within "
                    f"{timeout:.0f} s (round-timeout); is its SuperNode running?")
            time.sleep(self.POLL)
        self._record(RoundRecord(step, time.monotonic() - t0, {k: v.nbytes() for k, v in requests.items()},
                                 {k: v.nbytes() for k, v in answers.items()}))
        return check_answers(step, answers, requests)

    def _pull(self, ids: Sequence[str]) -> list:
        return list(self.grid.pull_messages(ids)) if ids else []

    @staticmethod
    def _decode(step: str, msg, who: str) -> Payload:
        if msg.has_error():
            raise ProtocolError(f"{who} failed in '{step}': {msg.error.reason} (if its SuperNode is "
                                "down, restart it and resume the run)")
        try:
            return from_recorddict(msg.content)
        except RhodeError as exc:
            raise ProtocolError(f"{who} sent a malformed answer to '{step}': {exc}") from None


class DirectTransport(Transport):
    """Every data holder's step function called in this process (no Flower): ``handlers[party]`` is
    ``(step, payload) -> payload``. Payloads cross as bundles (bytes), as on the wire."""

    def __init__(self, handlers: dict[int, Callable[[str, Payload], Payload]]) -> None:
        super().__init__()
        self.handlers = handlers

    def _call(self, party: int, step: str, p: Payload) -> Payload:
        from rhode.federated.flower.wire import error_payload, pack_bundle, unpack_bundle
        try:
            out = self.handlers[party](step, unpack_bundle(pack_bundle(p)))
        except RhodeError as exc:
            out = error_payload(exc)
        return unpack_bundle(pack_bundle(out))

    def discover(self, step: str, payload: Payload, n_parties: int, timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        answers = {}
        for party in sorted(self.handlers):
            answers[party] = self._call(party, step, payload)
        missing = sorted(set(range(n_parties)) - set(answers))
        if missing:
            raise ProtocolError(f"data holder(s) {missing} did not answer '{step}'")
        self._record(RoundRecord(step, time.monotonic() - t0, dict.fromkeys(answers, payload.nbytes()),
                                 {k: v.nbytes() for k, v in answers.items()}))
        return check_answers(step, answers, range(n_parties))

    def exchange(self, step: str, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        missing = sorted(set(requests) - set(self.handlers))
        if missing:
            raise ProtocolError(f"data holder(s) {', '.join(map(str, missing))} did not answer '{step}' "
                                "(not connected)")
        answers = {party: self._call(party, step, p) for party, p in requests.items()}
        self._record(RoundRecord(step, time.monotonic() - t0, {k: v.nbytes() for k, v in requests.items()},
                                 {k: v.nbytes() for k, v in answers.items()}))
        return check_answers(step, answers, requests)
