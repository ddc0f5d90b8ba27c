"""The ClientApp's only job: relay one Flower message's payload to the node's holder service.

A ``flwr-clientapp`` process lives for one message, so it keeps nothing: it reads the node
configuration (where the holder's storage is), hands the step, the run and node configurations and
the payload's bytes to the node-local holder service (:mod:`rhode.federated.flower.worker`, started if
none runs) and returns its answer. It imports neither OpenFHE nor the holder's code, loads no key and
deserializes no ciphertext: what the holder needs between messages stays in the service's memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from rhode.federated.flower import link
from rhode.federated.flower.settings import NodeConfig
from rhode.federated.flower.store import NodeStore
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, WorkerOp


def forward(step: str, payload: Payload, run_config: Mapping, node_config: Mapping,
            watch_pid: int) -> Payload:
    """The holder service's answer to ``step`` with ``payload`` (a rhode error payload if the step
    failed there). ``watch_pid``: the process the service must not outlive (the SuperExec)."""
    node = NodeConfig.from_node_config(node_config)
    request = Payload({
        Field.OP.value: WorkerOp.STEP.value,
        Field.STEP.value: step,
        Field.RUN_CONFIG.value: json.dumps(dict(run_config), sort_keys=True),
        Field.NODE_CONFIG.value: json.dumps(dict(node_config), sort_keys=True),
    })
    return link.call(NodeStore(node.storage), request, watch_pid, message=payload)


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where unavailable): what a message's
    ``flwr-clientapp`` process spent starting, importing and loading the app before its handler ran."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def add_timing(answer: Payload, **seconds: float) -> None:
    """Merge ``seconds`` into the answer's TIMING field (what the holder service reported already)."""
    try:
        timing = json.loads(answer.config.get(Field.TIMING.value, "{}"))
    except (TypeError, ValueError):
        timing = {}
    answer.config[Field.TIMING.value] = json.dumps({**timing, **seconds})
