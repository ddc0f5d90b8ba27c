"""Validation of model and training configurations: clear ParameterErrors."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.errors import ParameterError
from rhode.nn import ModelConfig, RecurrentModel, TrainConfig
from rhode.tensor import NumpyBackend


def test_defaults_validate() -> None:
    cfg = ModelConfig("gru", 3, 8).validate()
    assert cfg.activation == "poly" and cfg.tanh_degree % 2 == 1 and cfg.sigmoid_degree % 2 == 1
    train = TrainConfig(0.1, 16, 2).validate()
    assert train.clip == "tanh" and train.clip_bound > train.clip_value


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cell": "transformer"}, "cell must be one of rnn, gru, lstm"),
    ({"activation": "relu"}, "activation must be one of"),
    ({"hidden_size": 0}, "hidden_size must be an integer >= 1"),
    ({"input_size": 2.5}, "input_size must be an integer"),
    ({"tanh_interval": -1.0}, "tanh_interval must be a positive"),
    ({"sigmoid_interval": float("nan")}, "sigmoid_interval must be a positive finite"),
    ({"tanh_degree": 4}, "tanh_degree must be odd.*try 5"),
    ({"sigmoid_degree": 61}, "sigmoid_degree must be odd and between 1 and 59"),
])
def test_bad_model_config(kwargs: dict, match: str) -> None:
    base = {"cell": "rnn", "input_size": 1, "hidden_size": 4}
    with pytest.raises(ParameterError, match=match):
        ModelConfig(**{**base, **kwargs}).validate()
    with pytest.raises(ParameterError):
        RecurrentModel(ModelConfig(**{**base, **kwargs}))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"learning_rate": 0.0}, "learning_rate must be a positive"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"local_steps": -1}, "local_steps must be an integer >= 1"),
    ({"clip": "norm"}, "clip must be one of none, poly, tanh, abs"),
    ({"clip_value": 0.0}, "clip_value must be a positive"),
    ({"clip_value": 2.0, "clip_bound": 2.0}, "clip_bound .* must exceed clip_value"),
    ({"clip": "poly", "clip_degree": 6}, "clip_degree must be odd"),
    ({"clip": "tanh", "clip_degree": 0}, "clip_degree must be an integer >= 1"),
    ({"clip": "abs", "clip_degree": 1}, "clip_degree must be an integer >= 2"),
    ({"clip": "abs", "clip_degree": 80}, "clip_degree must be at most 59"),
])
def test_bad_train_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        TrainConfig(**{"learning_rate": 0.1, "batch_size": 8, "local_steps": 1, **kwargs}).validate()


def test_clip_none_ignores_clip_fields() -> None:
    TrainConfig(0.1, 8, 1, clip="none", clip_value=-1.0, clip_degree=4).validate()


def test_bad_seed_and_inputs() -> None:
    model = RecurrentModel(ModelConfig("rnn", 2, 3))
    with pytest.raises(ParameterError, match="seed must be a non-negative integer"):
        model.init_params(-1)
    params = model.init_params(0)
    with pytest.raises(ParameterError, match="at least one timestep"):
        model.predict(NumpyBackend(), params, [])
    with pytest.raises(ParameterError, match=r"\(batch, 2\) tensor"):
        model.predict(NumpyBackend(), params, [np.zeros((4, 3))])
