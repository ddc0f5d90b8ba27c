"""The ServerApp: the aggregator. It drives the protocol (:class:`~rhode.federated.aggregator.Aggregator`,
with the run policy of :class:`~rhode.federated.flower.server.DeploymentRun`) over Flower's Message API
and never holds a secret share.

``mode='train'`` runs collective key generation (or reloads the keys with ``resume=true``) and the
encrypted FedAvg iterations, writing a checkpoint after each; ``mode='predict'`` answers a querier's
request file. A data holder that does not answer within ``round-timeout`` seconds stops the run with
an error that names it; the last checkpoint is kept, and ``resume=true`` continues from it.
"""

from __future__ import annotations

import logging
import sys

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from rhode.errors import RhodeError
from rhode.federated.flower.server import DeploymentRun
from rhode.federated.flower.settings import DeployConfig
from rhode.federated.flower.transport import FlowerTransport

log = logging.getLogger("rhode.flower")

app = ServerApp()


def _configure_logging() -> None:
    if not log.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s rhode %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    _configure_logging()
    dc = DeployConfig.from_run_config(context.run_config)
    agg = DeploymentRun(dc, FlowerTransport(grid))
    agg.status("running", mode=dc.mode)
    try:
        summary = agg.train() if dc.mode == "train" else agg.predict()
    except RhodeError as exc:
        ckpt = agg.meta.get("history", [])
        agg.status("failed", mode=dc.mode, error=str(exc), error_kind=type(exc).__name__,
                   checkpoint_iteration=ckpt[-1]["iteration"] if ckpt else 0)
        log.error("run failed: %s", exc)
        raise
    agg.status("done", mode=dc.mode, **summary)
    log.info("run done: %s", summary)
