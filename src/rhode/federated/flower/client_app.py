"""The ClientApp: a data holder. Every handler converts the Flower message to a payload, runs the step
of :class:`rhode.federated.holder.HolderSide` on the node's state
(:class:`~rhode.federated.flower.node.NodeState`), and converts the answer back.

The node configuration names the data holder's CSV and storage directory
(``--node-config "party-index=0 data='/data/a.csv' storage='/var/lib/rhode'"``). A handler that cannot
do its step (corrupted payload, wrong keys, bad data) answers with a rhode error payload; it never
crashes the node, and the message never contains secret material.
"""

from __future__ import annotations

import logging
import os

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from rhode.errors import RhodeError
from rhode.federated.flower.node import NodeState
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.wire import from_recorddict, to_recorddict
from rhode.federated.holder import HolderSide
from rhode.federated.payload import error_payload
from rhode.federated.schema import Step

log = logging.getLogger("rhode.flower.client")

app = ClientApp()


def _serve(msg: Message, context: Context) -> Message:
    try:
        payload = from_recorddict(msg.content)
        node = NodeConfig.from_node_config(context.node_config)
        dc = DeployConfig.from_run_config(context.run_config)
        # the training worker outlives this process but not the SuperExec that launched it (which
        # itself ends with the SuperNode)
        state = NodeState(node, dc, watch_pid=os.getppid())
        answer = HolderSide(state).handle(msg.metadata.message_type, payload)
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
