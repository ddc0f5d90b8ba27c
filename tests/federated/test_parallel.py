"""The parallel engine (one worker process per data holder, batched refresh rounds in the parent)
trains the same model as the sequential in-process engine: same data, seed and batches, decrypted
weights equal to <= 1e-3 (CKKS noise), on real OpenFHE ciphertexts (insecure `test` preset, tiny
dimensions, N = 3)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rhode.errors import ParameterError, ProtocolError
from rhode.federated.engine import EncryptedSession
from rhode.federated.parallel import ParallelTrainer
from rhode.mhe import preset
from rhode.nn.config import ModelConfig, TrainConfig
from rhode.nn.model import RecurrentModel

TOL = 1e-3


def _holders(n: int, T: int, d: int, rows: int = 24):
    rng = np.random.default_rng(5)
    return [(rng.uniform(-1, 1, (rows, T, d)), rng.uniform(-0.8, 0.8, (rows, 1))) for _ in range(n)]


@pytest.fixture(scope="module")
def setup():
    model = RecurrentModel(ModelConfig("rnn", 2, 3, 1))
    train = TrainConfig(0.6, 8, 1)
    session = EncryptedSession.create(preset("test"), 3, model, train.batch_size)
    return session, model, train, _holders(3, 3, 2)


def _sequential(session, enc, holders, train, it):
    return [session.local_training(enc, X, Y, train, seed=3, party=i, iteration=it)
            for i, (X, Y) in enumerate(holders)]


@pytest.mark.slow
def test_parallel_equals_sequential(setup):
    session, model, train, holders = setup
    # separate encryptions: the sequential holders cache transposes on the model they share
    seq, par = session.encrypt_model(model.init_params(3)), session.encrypt_model(model.init_params(3))
    rotations = []
    with ParallelTrainer(session) as trainer:
        assert trainer.n_workers == 3
        for it in range(2):
            seq = session.aggregate(_sequential(session, seq, holders, train, it), None)
            local = trainer.local_training(par, holders, train, seed=3, iteration=it)
            par = session.aggregate(local, None)
            st = trainer.last
            # every holder trained in its worker, and refreshed there through the parent
            assert sorted(st.worker_cpu_seconds) == [0, 1, 2]
            assert st.refresh_requests > 0 and 1 <= st.refresh_rounds <= st.refresh_requests
            assert st.refreshed_ciphertexts > 0 and st.operations["rotations"] > 0
            # the global model's transposes: computed by every worker in the first iteration, then
            # once by the parent for all of them (as the sequential holders share them); the workers
            # still transpose their own updated weights after the first local step
            rotations.append(st.operations_by_op["transpose"]["rotations"])
            assert it == 0 or rotations[it] < rotations[0], rotations
    a, b = session.decrypt_model(seq), session.decrypt_model(par)
    moved = max(float(np.max(np.abs(a[k] - model.init_params(3)[k]))) for k in a)
    assert moved > 1e-2
    for k in a:
        assert a[k].shape == b[k].shape
        assert float(np.max(np.abs(a[k] - b[k]))) <= TOL, k


@pytest.mark.slow
def test_fewer_workers_than_holders_and_worker_errors(setup):
    session, model, train, holders = setup
    init = session.encrypt_model(model.init_params(4))
    seq = session.aggregate(_sequential(session, init, holders, train, 0), None)
    with ParallelTrainer(session, workers=2) as trainer:
        par = session.aggregate(trainer.local_training(init, holders, train, seed=3, iteration=0), None)
        a, b = session.decrypt_model(seq), session.decrypt_model(par)
        assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= TOL
        with pytest.raises(ParameterError, match="3 data holders"):
            trainer.local_training(init, holders[:2], train, seed=3, iteration=0)
        # a holder whose windows do not fit the model: the worker's error reaches the caller
        bad = list(holders)
        bad[1] = (holders[1][0][:, :, :1], holders[1][1])
        with pytest.raises(ProtocolError, match="worker 1 failed: DataError"):
            trainer.local_training(init, bad, train, seed=3, iteration=0)
        with pytest.raises(ProtocolError, match="closed"):
            trainer.local_training(init, holders, train, seed=3, iteration=0)
    with pytest.raises(ParameterError, match="workers"):
        ParallelTrainer(session, workers=4)


@pytest.mark.slow
def test_run_training_with_workers_matches_mirror(tmp_path):
    """`rhode train/demo` use worker processes by default: the whole run (keys, encrypted global
    statistics, training in 2 workers, FedAvg, prediction for the querier) still equals the mirror."""
    from rhode.federated.config import RunConfig
    from rhode.federated.run import run_training

    cfg = RunConfig(dataset="electricity", max_rows=500, cell="rnn", hidden=3, timesteps=3, batch=8,
                    learning_rate=0.7, local_steps=1, global_iterations=2, max_test_windows=8,
                    preset="test", seed=2, workers=2)
    report = run_training(cfg, tmp_path / "run", progress=False)
    assert report["workers"] == 2
    assert report["max_abs_weight_diff_vs_mirror"] <= TOL
    assert report["max_abs_prediction_diff_vs_mirror"] <= TOL
    # the workers' operations and the parent's refresh rounds are accounted for
    assert report["operations"]["rotations"] > 0 and report["operations"]["ct_ct_mults"] > 0
    assert report["refreshes"]["rounds"] > 0
    assert report["history"][-1]["loss_encrypted"] == pytest.approx(report["history"][-1]["loss_mirror"],
                                                                    abs=1e-3)


def test_worker_count_resolution():
    from rhode.federated.run import n_workers

    assert n_workers(1, 5) == 1
    assert n_workers(4, 3) == 3  # at most one per data holder
    cores = len(os.sched_getaffinity(0))
    assert n_workers(0, 64) == min(64, 2 * cores)  # at most two per core
    assert n_workers(0, 2) == min(2, 2 * cores)  # one per holder
