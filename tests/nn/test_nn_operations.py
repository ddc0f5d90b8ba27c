"""What the model asks of a backend: few encrypted operations, all terms of a product in one call,
no operation spent on the zero initial state."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from nn_testdata import random_batch

from rhode.nn import ModelConfig, RecurrentModel, TrainConfig, sgd_update
from rhode.tensor import NumpyBackend


class CountingBackend(NumpyBackend):
    """The numpy backend, counting calls (affine/affine_t by number of product terms)."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __getattribute__(self, name: str):
        attr = super().__getattribute__(name)
        if name in ("data", "param", "outer", "batch_sum", "add", "sub", "mul", "neg", "scale",
                    "add_const", "poly"):
            calls = super().__getattribute__("calls")

            def counted(*args, **kwargs):
                calls[name] += 1
                return attr(*args, **kwargs)
            return counted
        if name in ("affine", "affine_t"):
            calls = super().__getattribute__("calls")

            def counted_affine(pairs, *args):
                calls[f"{name}{len(pairs)}"] += 1
                return attr(pairs, *args)
            return counted_affine
        return attr


def _run(cell: str, T: int) -> tuple[Counter, Counter, Counter]:
    model = RecurrentModel(ModelConfig(cell, 2, 3))
    params = model.init_params(0)
    xs, y = random_batch(4, T, 2, 1, seed=1)
    fwd = CountingBackend()
    yhat, cache = model.forward(fwd, params, xs)
    bwd = CountingBackend()
    model.backward(bwd, params, cache, yhat, y, 4)
    pred = CountingBackend()
    model.predict(pred, params, xs)
    return fwd.calls, bwd.calls, pred.calls


@pytest.mark.parametrize("T", [1, 5])
def test_rnn_operation_counts(T: int) -> None:
    fwd, bwd, pred = _run("rnn", T)
    assert fwd["affine1"] == 2 and fwd["affine2"] == T - 1          # X_1 W + b and the head
    assert fwd["poly"] == 2 * T and fwd["mul"] == 0                 # tanh and tanh', no products
    assert pred["poly"] == T                                         # no derivative when predicting
    assert bwd["mul"] == 1 + T                                       # E = (Yhat - Y) * (1/b), D_t
    assert bwd["affine_t1"] == 1 + T - 1                             # E W_y^T, D_t U^T for t >= 2
    assert bwd["outer"] == 1 + T + (T - 1)                          # W_y, W, U (U skipped at t = 1)
    assert bwd["batch_sum"] == 2                                     # b_y, and b once for all t
    assert bwd["param"] == (1 if T == 1 else 0)                      # U's zero gradient when T = 1
    for calls in (fwd, bwd):
        assert calls["scale"] == 0


def test_gru_operation_counts() -> None:
    T = 4
    fwd, bwd, _ = _run("gru", T)
    assert fwd["affine2"] == 2 * (T - 1)                            # z, r: X W + H U + b in one call
    assert fwd["affine1"] == 2 + T + (T - 1) + 1  # z, r at t = 1; X W_n + b_n; H U_n + c_n; head
    assert fwd["poly"] == 6 * T and fwd["mul"] == 4 * T  # z, r, n and derivatives
    assert bwd["affine_t3"] == T - 1 and bwd["mul"] == 1 + 5 * T
    assert bwd["batch_sum"] == 1 + 4 and fwd["scale"] == bwd["scale"] == 0


def test_lstm_skips_forget_gate_at_first_step() -> None:
    T = 4
    fwd, bwd, pred = _run("lstm", T)
    assert fwd["affine1"] == 3 + 1 and fwd["affine2"] == 4 * (T - 1)
    assert pred["poly"] == 4 + 5 * (T - 1)                         # i, g, o, tanh(C); + f later
    assert bwd["affine_t4"] == T - 1 and bwd["affine_t3"] == 0
    assert fwd["scale"] == bwd["scale"] == 0


@pytest.mark.parametrize(("clip", "polys", "scales", "muls"),
                         [("none", 0, 1, 0), ("poly", 1, 0, 0), ("tanh", 1, 0, 0), ("abs", 2, 1, 1)])
def test_update_folds_learning_rate(clip: str, polys: int, scales: int, muls: int) -> None:
    model = RecurrentModel(ModelConfig("rnn", 1, 2))
    params = model.init_params(0)
    grads = {k: np.full_like(v, 0.1) for k, v in params.items()}
    be = CountingBackend()
    new = sgd_update(be, params, grads, TrainConfig(0.05, 4, 1, clip=clip))
    n = len(params)
    assert be.calls["poly"] == polys * n and be.calls["scale"] == scales * n
    assert be.calls["mul"] == muls * n
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - 0.05 * 0.1, atol=0.05 * 0.1 * 0.2)
