"""A data holder drops out of a real Flower deployment with a t-out-of-N key: a SuperLink and 4
SuperNodes on localhost over TLS, ``threshold = 3``, the `test` preset and tiny dimensions.

Data holder 2's SuperNode is killed during global iteration 1 (after its first refresh round): the
aggregator's next round to it times out (or the SuperLink reports it gone), holder 0 rebuilds its share
from 3 sealed pieces, and the iteration restarts with holders 0, 1 and 3; the training finishes. The
model, threshold-decrypted here with the 4 stored shares, equals the plaintext mirror of a run without
holder 2 (TOL = 1e-3, the deployment tests' tolerance), and a querier's prediction, answered while
holder 2 stays gone (holder 0 answers the key switch for both), decrypts to the plaintext prediction.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _flower_util import APP_DIR, decrypt_checkpoint, run_config, wait_for_round, write_csvs
from _localhost import LocalFederation

from rhode.federated.flower.querier import FlowerQuerier
from rhode.federated.mirror import predict_plain

pytestmark = [pytest.mark.flower, pytest.mark.slow]

TOL = 1e-3
RUN_TIMEOUT = 900
N = 4


def _mirror(csvs, rc: dict, stats_json: dict, participants: list[int]) -> dict:
    """The plaintext FedAvg of the deployment's data, options and revealed statistics, with only
    ``participants`` training."""
    from rhode.data import Normalizer
    from rhode.federated.config import RunConfig, model_configs
    from rhode.federated.dataprep import load_holders, stats_from_json, window_holders
    from rhode.federated.flower.settings import DeployConfig
    from rhode.federated.mirror import plain_fedavg
    from rhode.nn.model import RecurrentModel

    dc = DeployConfig.from_run_config(rc)
    cfg = RunConfig(**{**dc.run.to_dict(), "data": tuple(str(c) for c in csvs), "features": dc.run.features})
    holders = load_holders(cfg)
    window_holders(holders, Normalizer.from_stats(stats_from_json(json.dumps(stats_json))), cfg)
    parties = [(h.X, h.Y) for h in holders]
    poly, _, train_cfg = model_configs(cfg, holders[0].train.n_features)
    return plain_fedavg(RecurrentModel(poly), train_cfg, parties, cfg, [float(len(X)) for X, _ in parties],
                        participants=lambda k: participants)[-1]


def test_dropout_deployed_killed_node_training_finishes_and_prediction_decrypts(tmp_path):
    csvs = write_csvs(tmp_path, n=N)
    server = tmp_path / "server"
    rc = run_config(server, **{"n-parties": N, "threshold": 3, "global-iterations": 1, "round-timeout": 30.0})
    with LocalFederation(tmp_path / "federation", [{"data": str(c)} for c in csvs], tls=True) as fed:
        proc = fed.start_run(APP_DIR, rc)
        wait_for_round(server / "rounds.jsonl", "query.refresh", "iteration-1", RUN_TIMEOUT, proc)
        fed.kill_node(2)
        r = fed.wait(proc, RUN_TIMEOUT)
        status = json.loads((server / "status.json").read_text())
        assert status["state"] == "done", (status, r.output[-3000:])
        meta = json.loads((server / "run.json").read_text())
        assert meta["dropouts"] == [{"party": 2, "iteration": 1, "rebuilder": 0}]
        assert [h["holders"] for h in meta["history"]] == [[0, 1, 3]]
        steps = [json.loads(line)["step"] for line in (server / "rounds.jsonl").read_text().splitlines()]
        assert steps.count("query.recover") == 1 and steps.count("query.adopt") == 1
        storages = [c["storage"] for c in fed.node_configs]
        _, model = decrypt_checkpoint(server, storages)
        want = _mirror(csvs, rc, meta["global_stats"], [0, 1, 3])
        assert max(float(np.max(np.abs(model[k] - want[k]))) for k in model) <= TOL

        q = FlowerQuerier(server)
        X = q.windows(csvs[1])[0][:6]
        (tmp_path / "request.bin").write_bytes(q.request(X))
        r = fed.run(APP_DIR, {**rc, "mode": "predict", "query-in": str(tmp_path / "request.bin"),
                              "query-out": str(tmp_path / "response.bin")}, timeout=RUN_TIMEOUT)
        assert (tmp_path / "response.bin").exists(), r.output[-3000:]
        y = q.decrypt((tmp_path / "response.bin").read_bytes())
        assert float(np.max(np.abs(y - predict_plain(q.model, model, X)))) <= TOL
