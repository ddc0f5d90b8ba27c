"""rhode on Flower: the deployment engine (data holders on separate machines).

* :mod:`~.server_app` / :mod:`~.client_app` - the Flower ServerApp (aggregator, no secret) and
  ClientApp (data holder), Message API only; the FAB is deploy/flower.
* :mod:`~.aggregator` - the protocol driver; :mod:`~.holder` - each data holder's steps;
  :mod:`~.worker` - the node-local training worker that pauses for refreshes;
  :mod:`~.transport` - one round trip per step (Flower, or direct calls for tests);
  :mod:`~.wire`, :mod:`~.model_io` - payloads and the encrypted model as bytes;
  :mod:`~.store` - node-local state; :mod:`~.settings` - run and node configuration;
  :mod:`~.querier` - a querier's prediction path; :mod:`~.localhost` - a whole deployment on one
  machine (tests, trying it out).

See docs/deployment.md.
"""
