"""One training step (forward, BPTT, SGD update with the clip polynomial) of RNN, GRU and LSTM on
the cipher backend, through the unchanged rhode.nn model code, against the numpy mirror."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.nn.config import ModelConfig, TrainConfig
from rhode.nn.model import RecurrentModel
from rhode.nn.optim import sgd_update
from rhode.tensor import NumpyBackend

MODEL_TOL = 1e-3


def one_step(be, model, params, X, Y, train):
    b = X.shape[0]
    p = be.param if be.name == "cipher" else np.asarray
    pe = {k: p(v) for k, v in params.items()}
    yhat, cache = model.forward(be, pe, [be.data(X[:, t]) for t in range(X.shape[1])])
    grads = model.backward(be, pe, cache, yhat, be.data(Y), b)
    return yhat, grads, sgd_update(be, pe, grads, train)


def check_step(be, reveal, cell, b, T, d=3, h=5):
    model = RecurrentModel(ModelConfig(cell, d, h))
    params = model.init_params(3)
    rng = np.random.default_rng(5)
    X, Y = rng.uniform(-1, 1, (b, T, d)), rng.uniform(-1, 1, (b, 1))
    train = TrainConfig(learning_rate=0.5, batch_size=b, local_steps=1)
    y_c, g_c, new_c = one_step(be, model, params, X, Y, train)
    y_n, g_n, new_n = one_step(NumpyBackend(), model, params, X, Y, train)
    np.testing.assert_allclose(reveal(be, y_c), y_n, atol=MODEL_TOL, rtol=0)
    for k in params:
        np.testing.assert_allclose(reveal(be, g_c[k]), g_n[k], atol=MODEL_TOL, rtol=0, err_msg=k)
        np.testing.assert_allclose(reveal(be, new_c[k]), new_n[k], atol=MODEL_TOL, rtol=0, err_msg=k)
        assert be.level(new_c[k]) <= be.usable
    assert not np.allclose(new_n["W_y"], params["W_y"], atol=10 * MODEL_TOL)   # the step moved
    return be.counters()["total"]


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_training_step_matches_mirror(backend, reveal, cell):
    totals = check_step(backend, reveal, cell, b=5, T=3)
    assert totals["refreshes"] > 0 and totals["rotations"] > 0


@pytest.mark.slow
def test_naive_baseline_same_interface(naive_backend, reveal):
    """One sample per ciphertext (c = 1): same results, b ciphertexts per batch tensor."""
    check_step(naive_backend, reveal, "rnn", b=3, T=2)


def test_querier_inputs_forward(backend, reveal):
    """A querier's encrypted inputs (ct x ct with the weights) predict like the mirror."""
    be = backend
    model = RecurrentModel(ModelConfig("rnn", 2, 4))
    params = model.init_params(1)
    X = np.random.default_rng(2).uniform(-1, 1, (6, 3, 2))
    xs = be.encrypt_inputs([X[:, t] for t in range(3)])
    be.reset_counters()
    y = model.predict(be, {k: be.param(v) for k, v in params.items()}, xs)
    ref = model.predict(NumpyBackend(), params, [X[:, t] for t in range(3)])
    np.testing.assert_allclose(reveal(be, y), ref, atol=MODEL_TOL, rtol=0)
    assert "convert" not in be.counters()["by_op"]          # inputs arrive in the wanted layouts
