"""Forward passes with exact activations against a second, per-sample, loop-based implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nn_testdata import random_batch

from rhode.nn import ModelConfig, RecurrentModel
from rhode.tensor import NumpyBackend


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def matvec(x: list[float], W: np.ndarray) -> list[float]:
    """x (n,) times W (n, m), written as loops."""
    return [sum(x[i] * W[i, j] for i in range(len(x))) for j in range(W.shape[1])]


def reference(cell: str, p: dict, seq: list[list[float]], h_size: int) -> list[float]:
    """One sample: seq is T lists of d features. Returns the head output as a list."""
    h = [0.0] * h_size
    c = [0.0] * h_size
    for x in seq:
        if cell == "rnn":
            a = [u + v + w for u, v, w in zip(matvec(x, p["W"]), matvec(h, p["U"]), p["b"], strict=True)]
            h = [math.tanh(v) for v in a]
        elif cell == "gru":  # torch.nn.GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
            z = [sig(u + v + w) for u, v, w in zip(matvec(x, p["W_z"]), matvec(h, p["U_z"]), p["b_z"],
                                                  strict=True)]
            r = [sig(u + v + w) for u, v, w in zip(matvec(x, p["W_r"]), matvec(h, p["U_r"]), p["b_r"],
                                                  strict=True)]
            hn = [v + w for v, w in zip(matvec(h, p["U_n"]), p["c_n"], strict=True)]
            n = [math.tanh(u + w + r[j] * hn[j])
                 for j, (u, w) in enumerate(zip(matvec(x, p["W_n"]), p["b_n"], strict=True))]
            h = [(1 - z[j]) * n[j] + z[j] * h[j] for j in range(h_size)]
        else:
            gates = {}
            for k in "ifgo":
                pre = [u + v + w for u, v, w in zip(matvec(x, p[f"W_{k}"]), matvec(h, p[f"U_{k}"]),
                                                    p[f"b_{k}"], strict=True)]
                gates[k] = [math.tanh(v) if k == "g" else sig(v) for v in pre]
            c = [gates["f"][j] * c[j] + gates["i"][j] * gates["g"][j] for j in range(h_size)]
            h = [gates["o"][j] * math.tanh(c[j]) for j in range(h_size)]
    return [v + w for v, w in zip(matvec(h, p["W_y"]), p["b_y"], strict=True)]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_forward_matches_reference(cell: str) -> None:
    d, h, out, T, b = 3, 4, 2, 5, 6
    model = RecurrentModel(ModelConfig(cell, d, h, out, activation="exact"))
    params = {k: 2.0 * v for k, v in model.init_params(seed=11).items()}
    xs, _ = random_batch(b, T, d, out, seed=12)
    be = NumpyBackend()
    yhat = model.predict(be, params, xs)
    ref = np.array([reference(cell, params, [list(xs[t][s]) for t in range(T)], h) for s in range(b)])
    assert yhat.shape == (b, out)
    np.testing.assert_allclose(yhat, ref, rtol=0, atol=1e-10)
    yhat_train, _ = model.forward(be, params, xs)
    np.testing.assert_allclose(yhat_train, ref, rtol=0, atol=1e-10)


def test_param_shapes_and_init() -> None:
    model = RecurrentModel(ModelConfig("lstm", 3, 4, 2))
    assert list(model.param_shapes)[-2:] == ["W_y", "b_y"]
    assert model.param_shapes["W_f"] == (3, 4) and model.param_shapes["U_f"] == (4, 4)
    a, b, c = model.init_params(5), model.init_params(5), model.init_params(6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W_i"], c["W_i"])
    assert all(np.max(np.abs(v)) <= 0.5 for v in a.values())  # uniform in +-1/sqrt(h)
    gru = RecurrentModel(ModelConfig("gru", 1, 2))
    assert set(gru.param_shapes) == {"W_z", "U_z", "b_z", "W_r", "U_r", "b_r", "W_n", "U_n", "b_n", "c_n",
                                     "W_y", "b_y"}
