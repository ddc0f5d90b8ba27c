"""Rounds over Flower's Message API: the deployment's :class:`~rhode.federated.transport.Transport`.

Raw-bytes ``ArrayRecord`` payloads (:mod:`rhode.federated.flower.wire`), its own push/pull loop (0.1 s
polling instead of ``send_and_receive``'s 3 s), a timeout per round that names every data holder that
did not answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rhode.errors import HolderUnavailableError, ProtocolError, RhodeError
from rhode.federated.flower.wire import from_recorddict, to_recorddict
from rhode.federated.payload import ERROR_KIND_KEY, Payload
from rhode.federated.schema import Field, Step
from rhode.federated.transport import Transport, check_answers


class FlowerTransport(Transport):
    """Rounds over a Flower ``Grid`` (the ServerApp's connection to the SuperLink). Every node keeps
    its own copy of the public keys."""

    keeps_public_keys = True

    POLL = 0.1
    RETRY = 2.0  # seconds before a node that answered discovery with a Flower error is asked again

    def __init__(self, grid) -> None:
        super().__init__()
        self.grid = grid
        self.nodes: dict[int, int] = {}  # party -> node id

    def _message(self, node_id: int, step: Step, payload: Payload, group: str):
        from flwr.app import Message

        return Message(to_recorddict(payload), dst_node_id=node_id, message_type=step.value, group_id=group)

    def discover(self, step: Step, payload: Payload, n_parties: int, timeout: float,
                 expected: Sequence[int] | None = None) -> dict[int, Payload]:
        t0 = time.monotonic()
        want = set(range(n_parties) if expected is None else expected)
        deadline = t0 + timeout
        asked: dict[str, int] = {}  # message id -> node id, until it answers
        contacted: set[int] = set()  # asked once; again after RETRY s if Flower answered with an error
        answers: dict[int, Payload] = {}
        nodes: dict[int, int] = {}
        unavailable: dict[int, str] = {}  # node id -> Flower's error (e.g. a stale registration)
        retry_at: dict[int, float] = {}
        payload = payload.encoded()
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
                party = p.config.get(Field.PARTY.value)
                if p.error is not None:
                    raise ProtocolError(
                        f"the data holder on node {nid} rejected '{step.value}': "
                        f"{p.config.get(ERROR_KIND_KEY, 'error')}: {p.error}"
                    )
                if not isinstance(party, int) or isinstance(party, bool) or not 0 <= party < n_parties:
                    raise ProtocolError(
                        f"node {nid} answered '{step.value}' with party index {party!r}; "
                        f"expected 0 to {n_parties - 1} (node config party-index)"
                    )
                if party in nodes and nodes[party] != nid:
                    raise ProtocolError(
                        f"nodes {nodes[party]} and {nid} both claim party index {party}; "
                        "give every SuperNode its own party-index"
                    )
                nodes[party], answers[party] = nid, p
                unavailable.pop(nid, None)
            if want <= set(answers):
                break
            if time.monotonic() > deadline:
                missing = sorted(want - set(answers))
                raise HolderUnavailableError(
                    f"data holder(s) {', '.join(map(str, missing))} did not answer '{step.value}' within "
                    f"{timeout:.0f} s ({len(answers)} of {n_parties} connected and answered"
                    + "".join(f"; node {nid}: {why}" for nid, why in sorted(unavailable.items()))
                    + "); start their SuperNodes (node config party-index) or raise connect-timeout",
                    missing)
            time.sleep(self.POLL)
        self.nodes = {k: v for k, v in nodes.items() if k in want}
        answers = {k: v for k, v in answers.items() if k in want}
        self._record(
            step, t0, dict.fromkeys(answers, sent_bytes), {k: v.nbytes() for k, v in answers.items()}, answers
        )
        return answers

    def exchange(self, step: Step, requests: dict[int, Payload], timeout: float) -> dict[int, Payload]:
        t0 = time.monotonic()
        once: dict[int, Payload] = {}  # one byte form per distinct payload (a broadcast is encoded once)
        for p in requests.values():
            if id(p) not in once:
                once[id(p)] = p.encoded()
        requests = {party: once[id(p)] for party, p in requests.items()}
        msgs = [self._message(self.nodes[party], step, p, self.tag) for party, p in requests.items()]
        ids = list(self.grid.push_messages(msgs))
        pending = {mid: party for mid, party in zip(ids, requests) if mid}
        if len(pending) != len(requests):
            failed = sorted(set(requests) - set(pending.values()))
            raise ProtocolError(f"the SuperLink refused '{step.value}' for data holder(s) {failed}")
        answers: dict[int, Payload] = {}
        deadline = t0 + timeout
        while pending:
            for msg in self._pull(list(pending)):
                party = pending.pop(msg.metadata.reply_to_message_id, None)
                if party is not None:
                    who = f"data holder {party} (node {self.nodes[party]})"
                    if msg.has_error():  # Flower's own error: the node is gone (e.g. missed heartbeats)
                        raise HolderUnavailableError(
                            f"{who} failed in '{step.value}': {msg.error.reason} (if its SuperNode is "
                            "down, restart it and resume the run)", [party])
                    answers[party] = self._decode(step, msg, who)
            if not pending:
                break
            if time.monotonic() > deadline:
                missing = sorted(pending.values())
                raise HolderUnavailableError(
                    f"data holder(s) {', '.join(map(str, missing))} (node "
                    f"{', '.join(str(self.nodes[m]) for m in missing)}) did not answer '{step.value}' within "
                    f"{timeout:.0f} s (round-timeout); is its SuperNode running?", missing)
            time.sleep(self.POLL)
        self._record(
            step,
            t0,
            {k: v.nbytes() for k, v in requests.items()},
            {k: v.nbytes() for k, v in answers.items()},
            answers,
        )
        return check_answers(step, answers, requests)

    def _pull(self, ids: Sequence[str]) -> list:
        return list(self.grid.pull_messages(ids)) if ids else []

    @staticmethod
    def _decode(step: Step, msg, who: str) -> Payload:
        if msg.has_error():
            raise ProtocolError(
                f"{who} failed in '{step.value}': {msg.error.reason} (if its SuperNode is "
                "down, restart it and resume the run)"
            )
        try:
            return from_recorddict(msg.content)
        except RhodeError as exc:
            raise ProtocolError(f"{who} sent a malformed answer to '{step.value}': {exc}") from None
