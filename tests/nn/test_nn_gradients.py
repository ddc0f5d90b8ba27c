"""BPTT gradients of all three cells against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from nn_testdata import random_batch

from rhode.nn import ModelConfig, RecurrentModel, mse_loss
from rhode.tensor import NumpyBackend

BE = NumpyBackend()


def _loss(model: RecurrentModel, params: dict, xs: list, y: np.ndarray) -> float:
    return mse_loss(model.predict(BE, params, xs), y)


@pytest.mark.parametrize("activation", ["exact", "poly"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("T", [1, 4])
def test_backward_matches_finite_differences(cell: str, activation: str, T: int) -> None:
    model = RecurrentModel(ModelConfig(cell, input_size=2, hidden_size=3, output_size=2,
                                       activation=activation))
    params = model.init_params(seed=3)
    # larger weights than the default init, so that every term of the gradient matters
    params = {k: 2.0 * v for k, v in params.items()}
    xs, y = random_batch(b=5, T=T, d=2, out=2, seed=4)
    yhat, cache = model.forward(BE, params, xs)
    grads = model.backward(BE, params, cache, yhat, y, batch_size=5)
    assert list(grads) == list(model.param_shapes)
    eps = 1e-6
    for name, w in params.items():
        assert grads[name].shape == w.shape, name
        fd = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus, minus = dict(params), dict(params)
            plus[name] = w.copy()
            plus[name][idx] += eps
            minus[name] = w.copy()
            minus[name][idx] -= eps
            fd[idx] = (_loss(model, plus, xs, y) - _loss(model, minus, xs, y)) / (2 * eps)
        scale = max(np.max(np.abs(fd)), 1e-3)
        err = np.max(np.abs(grads[name] - fd)) / scale
        assert err <= 1e-5, f"{cell}/{activation}/T={T} {name}: relative error {err:.2e}"
        if T > 1:
            assert np.max(np.abs(fd)) > 1e-4, f"{name} gradient unexpectedly ~0"


def test_loss_at_forward_matches_predict() -> None:
    model = RecurrentModel(ModelConfig("gru", 2, 3, activation="poly"))
    params = model.init_params(0)
    xs, _ = random_batch(4, 3, 2, 1, seed=1)
    yhat, _ = model.forward(BE, params, xs)
    np.testing.assert_array_equal(yhat, model.predict(BE, params, xs))
