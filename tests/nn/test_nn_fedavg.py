"""Mini-batch schedule, FedAvg, and the plaintext federated trainer (the mirror of the encrypted run)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from nn_testdata import noisy_sine_windows

from rhode.errors import DataError, ParameterError
from rhode.nn import (
    ModelConfig,
    RecurrentModel,
    TrainConfig,
    batch_indices,
    evaluate,
    fedavg,
    local_training,
    train_federated,
)
from rhode.nn.train import BatchKey
from rhode.tensor import NumpyBackend

BE = NumpyBackend()


def _parties(n_parties: int = 3, n: int = 600) -> list[tuple[np.ndarray, np.ndarray]]:
    X, Y = noisy_sine_windows(n)
    return [(X[i::n_parties], Y[i::n_parties]) for i in range(n_parties)]


def test_batch_indices_deterministic_and_distinct() -> None:
    a = batch_indices(100, 10, seed=1, party=2, iteration=3, step=4)
    assert np.array_equal(a, batch_indices(100, 10, seed=1, party=2, iteration=3, step=4))
    assert a.shape == (10,) and len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0)
    assert a.min() >= 0 and a.max() < 100
    others = [batch_indices(100, 10, seed=s, party=p, iteration=i, step=t)
              for s, p, i, t in [(2, 2, 3, 4), (1, 0, 3, 4), (1, 2, 0, 4), (1, 2, 3, 0)]]
    assert all(not np.array_equal(a, o) for o in others)
    assert np.array_equal(batch_indices(5, 5, seed=0, party=0, iteration=0, step=0), np.arange(5))


def test_batch_indices_errors() -> None:
    with pytest.raises(DataError,
                       match=r"party 1 has 4 windows, fewer than the batch size \(--batch\) 8; lower "):
        batch_indices(4, 8, seed=0, party=1, iteration=0, step=0)
    with pytest.raises(ParameterError, match="seed must be a non-negative integer"):
        batch_indices(40, 8, seed=-3, party=1, iteration=0, step=0)


def test_fedavg_uniform_and_weighted() -> None:
    rng = np.random.default_rng(0)
    sets = [{"W": rng.normal(size=(2, 3)), "b": rng.normal(size=3)} for _ in range(3)]
    avg = fedavg(BE, sets)
    np.testing.assert_allclose(avg["W"], np.mean([s["W"] for s in sets], axis=0), rtol=1e-14)
    same = fedavg(BE, sets, weights=[5, 5, 5])
    np.testing.assert_array_equal(same["b"], avg["b"])
    w = fedavg(BE, sets, weights=[1, 0, 3])
    np.testing.assert_allclose(w["b"], 0.25 * sets[0]["b"] + 0.75 * sets[2]["b"], rtol=1e-14)
    assert fedavg(BE, sets[:1])["W"] is sets[0]["W"]
    with pytest.raises(ParameterError, match="non-negative numbers with a positive sum"):
        fedavg(BE, sets, weights=[1, -1, 1])
    with pytest.raises(ParameterError, match="different parameter names"):
        fedavg(BE, [sets[0], {"W": sets[1]["W"]}])


def test_train_federated_is_local_training_then_fedavg() -> None:
    model = RecurrentModel(ModelConfig("gru", 1, 4))
    train = TrainConfig(0.3, 16, 2, clip="abs")
    parties = _parties(3, 300)
    res = train_federated(model, train, parties, global_iterations=2, seed=7)
    params = model.init_params(7)
    for k in range(2):
        local = [local_training(BE, model, dict(params), X, Y, train, BatchKey(7, i, k))
                 for i, (X, Y) in enumerate(parties)]
        params = {n: np.mean([p[n] for p in local], axis=0) for n in params}
    for n in params:
        np.testing.assert_allclose(res.params[n], params[n], rtol=1e-12, atol=1e-14)
    X_all = np.concatenate([X for X, _ in parties])
    Y_all = np.concatenate([Y for _, Y in parties])
    assert res.history[-1]["train_loss"] == pytest.approx(evaluate(model, params, X_all, Y_all)["train_loss"])


def test_centralized_is_one_party() -> None:
    model = RecurrentModel(ModelConfig("rnn", 1, 4))
    train = TrainConfig(0.3, 16, 3)
    X, Y = noisy_sine_windows(200)
    res = train_federated(model, train, [(X, Y)], global_iterations=2, seed=1)
    params = model.init_params(1)
    for k in range(2):
        params = local_training(BE, model, params, X, Y, train, BatchKey(1, 0, k))
    for n in params:
        np.testing.assert_array_equal(res.params[n], params[n])


def test_local_training_rejects_bad_windows() -> None:
    model = RecurrentModel(ModelConfig("rnn", 2, 4))
    params = model.init_params(0)
    train = TrainConfig(0.1, 4, 1)
    X = np.zeros((10, 5, 2))
    with pytest.raises(DataError, match=r"windows X must have shape \(n, T, 2\)"):
        local_training(BE, model, params, X[:, :, :1], np.zeros((10, 1)), train, BatchKey(0, 0, 0))
    with pytest.raises(DataError, match=r"targets Y must have shape \(10, 1\)"):
        local_training(BE, model, params, X, np.zeros((9, 1)), train, BatchKey(0, 0, 0))
    X[3, 2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        local_training(BE, model, params, X, np.zeros(10), train, BatchKey(0, 0, 0))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_demo_configuration_trains_in_seconds(cell: str) -> None:
    model = RecurrentModel(ModelConfig(cell, 1, 8))
    start = time.process_time()
    res = train_federated(model, TrainConfig(0.5, 32, 2), _parties(3, 600), global_iterations=5, seed=0)
    assert time.process_time() - start < 10.0
    assert len(res.history) == 5 and all(h["in_range"] for h in res.history)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_poly_fedavg_learns_and_tracks_exact(cell: str) -> None:
    parties = _parties(3, 600)
    train = TrainConfig(0.5, 32, 2, clip="tanh")
    losses = {}
    for act in ("poly", "exact"):
        model = RecurrentModel(ModelConfig(cell, 1, 8, activation=act))
        initial = evaluate(model, model.init_params(3), *map(np.concatenate, zip(*parties, strict=True)))
        res = train_federated(model, train, parties, global_iterations=40, seed=3)
        losses[act] = res.history[-1]["train_loss"]
        assert losses[act] < 0.25 * initial["train_loss"], act
        assert all(h["in_range"] for h in res.history)
    assert losses["poly"] < 1.5 * losses["exact"] + 2e-3, losses
