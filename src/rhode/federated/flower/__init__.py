"""rhode on Flower: the deployment's transport and node-side state for the one protocol
(:mod:`rhode.federated.aggregator`, :mod:`rhode.federated.holder`).

* :mod:`~.server_app` / :mod:`~.client_app` - the Flower ServerApp (aggregator, no secret) and
  ClientApp (data holder), Message API only; the FAB is deploy/flower.
* :mod:`~.server` - the deployment's run policy (run.json, checkpoints, rounds log, status);
  :mod:`~.transport` - one round trip per step over Flower; :mod:`~.wire` - payloads as records.
* :mod:`~.node` - a data holder's state in its storage directory (:mod:`~.store`);
  :mod:`~.worker` and :mod:`~.link` - the node-local worker that runs its jobs, and the socket to it.
* :mod:`~.settings` - run and node configuration; :mod:`~.querier` - a querier's prediction path.

See docs/deployment.md.
"""
