"""The ClientApp: a data holder's relay. Every handler converts the Flower message to a payload, hands it
to the node's holder service (:func:`rhode.federated.flower.relay.forward`: the one holder side,
:class:`rhode.federated.holder.HolderSide`, over the state the service keeps in memory) and converts the
answer back.

The node configuration names the data holder's CSV and storage directory
(``--node-config "party-index=0 data='/data/a.csv' storage='/var/lib/rhode'"``). A handler that cannot
do its step (corrupted payload, wrong keys, bad data) answers with a rhode error payload; it never
crashes the node, and the message never contains secret material.
"""

from __future__ import annotations

import logging
import os
import time

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from rhode.errors import RhodeError
from rhode.federated.flower.relay import add_timing, forward, process_age
from rhode.federated.flower.wire import from_recorddict, to_recorddict
from rhode.federated.payload import error_payload
from rhode.federated.schema import Step

log = logging.getLogger("rhode.flower.client")

app = ClientApp()


def _serve(msg: Message, context: Context) -> Message:
    started = process_age()
    try:
        payload = from_recorddict(msg.content)
        t0 = time.perf_counter()
        # the holder service outlives this process but not the SuperExec that launched it (which
        # itself ends with the SuperNode)
        answer = forward(msg.metadata.message_type, payload, context.run_config, context.node_config,
                         watch_pid=os.getppid())
        add_timing(answer, process_start=started, relay=time.perf_counter() - t0)
    except Exception as exc:  # every failure becomes an error payload, never a crash of the node
        if not isinstance(exc, RhodeError):
            log.exception("step %s failed", msg.metadata.message_type)
        answer = error_payload(exc)
    return Message(to_recorddict(answer), reply_to=msg)


def _register() -> None:
    for step in Step:
        category, action = step.value.split(".")
        getattr(app, category)(action)(_serve)


_register()
