"""Momentum (heavy ball, Nesterov) and the step-decay learning-rate schedule of rhode.nn.optim, and the
per-party velocity the plaintext federated trainer (the mirror) carries across global iterations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from nn_testdata import noisy_sine_windows

from rhode.errors import ParameterError
from rhode.nn import (
    ModelConfig,
    RecurrentModel,
    TrainConfig,
    batch_indices,
    fedavg,
    learning_rate_at,
    make_clipper,
    sgd_update,
    train_federated,
    train_locally,
    update,
)
from rhode.nn.optim import at_iteration
from rhode.nn.train import BatchKey
from rhode.tensor import NumpyBackend

BE = NumpyBackend()


def _parties(n_parties: int = 2, n: int = 120) -> list[tuple[np.ndarray, np.ndarray]]:
    X, Y = noisy_sine_windows(n, T=3)
    return [(X[i::n_parties], Y[i::n_parties]) for i in range(n_parties)]


def _grads(model: RecurrentModel, w: dict, X: np.ndarray, Y: np.ndarray, idx: np.ndarray) -> dict:
    xs = [X[idx, t, :] for t in range(X.shape[1])]
    yhat, cache = model.forward(BE, w, xs)
    return model.backward(BE, w, cache, yhat, Y[idx], len(idx))


def _today(model, train, parties, iterations: int, seed: int) -> dict:
    """Plain SGD as it ran before momentum existed: every step W - eta clip(g), then FedAvg."""
    w = model.init_params(seed)
    for k in range(iterations):
        local = []
        for i, (X, Y) in enumerate(parties):
            p = dict(w)
            for s in range(train.local_steps):
                idx = batch_indices(len(X), train.batch_size, seed=seed, party=i, iteration=k, step=s)
                p = sgd_update(BE, p, _grads(model, p, X, Y, idx), train)
            local.append(p)
        w = fedavg(BE, local, [float(len(X)) for X, _ in parties])
    return w


def test_momentum_zero_is_todays_sgd_exactly() -> None:
    model = RecurrentModel(ModelConfig("gru", 1, 3))
    parties = _parties(3, 150)
    train = TrainConfig(0.4, 8, 2, clip="tanh", momentum=0.0)
    res = train_federated(model, train, parties, global_iterations=3, seed=4,
                          weights=[float(len(X)) for X, _ in parties])
    want = _today(model, train, parties, 3, 4)
    for k in want:
        np.testing.assert_array_equal(res.params[k], want[k])
    assert res.velocities == []
    out = train_locally(BE, model, model.init_params(0), parties[0], train, BatchKey(0, 0, 0))
    assert out.velocity is None
    assert at_iteration(train, 5) is train  # no schedule: the same configuration, the same polynomial


def _hand_reference(model, train: TrainConfig, parties, iterations: int, seed: int) -> tuple[dict, list]:
    """v <- mu v + eta_k g; w <- w - v (Nesterov: w <- w - eta_k g - mu v) written out in numpy, clip
    'none', each party's v carried across global iterations, weighted FedAvg by hand."""
    mu = train.momentum
    w = {k: v.copy() for k, v in model.init_params(seed).items()}
    vel = [{k: np.zeros_like(x) for k, x in w.items()} for _ in parties]
    n = np.array([len(X) for X, _ in parties], dtype=float)
    for it in range(iterations):
        eta = train.learning_rate * train.lr_decay ** (it // train.lr_decay_every)
        local = []
        for i, (X, Y) in enumerate(parties):
            p = {k: x.copy() for k, x in w.items()}
            for s in range(train.local_steps):
                idx = batch_indices(len(X), train.batch_size, seed=seed, party=i, iteration=it, step=s)
                g = _grads(model, p, X, Y, idx)
                for k in p:
                    vel[i][k] = mu * vel[i][k] + eta * g[k]
                    p[k] = p[k] - (eta * g[k] + mu * vel[i][k] if train.nesterov else vel[i][k])
            local.append(p)
        w = {k: sum(n[i] * local[i][k] for i in range(len(parties))) / n.sum() for k in w}
    return w, vel


@pytest.mark.parametrize("nesterov", [False, True])
def test_heavy_ball_equals_hand_written_reference(nesterov: bool) -> None:
    model = RecurrentModel(ModelConfig("rnn", 1, 3))
    parties = _parties(2, 120)
    train = TrainConfig(0.3, 8, 2, clip="none", momentum=0.7, nesterov=nesterov, lr_decay=0.5)
    res = train_federated(model, train, parties, global_iterations=2, seed=2,
                          weights=[float(len(X)) for X, _ in parties])
    want_w, want_v = _hand_reference(model, train, parties, 2, 2)
    for k in want_w:
        np.testing.assert_allclose(res.params[k], want_w[k], rtol=1e-12, atol=1e-14)
        for i in range(2):
            np.testing.assert_allclose(res.velocities[i][k], want_v[i][k], rtol=1e-12, atol=1e-14)
    # the velocity is per party (not averaged) and it changes the result
    assert not np.allclose(res.velocities[0]["W"], res.velocities[1]["W"])
    plain = train_federated(model, TrainConfig(0.3, 8, 2, clip="none", lr_decay=0.5), parties,
                            global_iterations=2, seed=2, weights=[float(len(X)) for X, _ in parties])
    assert np.max(np.abs(plain.params["W"] - res.params["W"])) > 1e-3


def test_velocity_carried_with_the_clip_polynomial() -> None:
    """train_locally with the tanh clip: the velocity it returns after iteration 0 is what iteration 1
    starts from (the same as one run of two iterations with a single party)."""
    model = RecurrentModel(ModelConfig("lstm", 1, 2))
    (X, Y), = _parties(1, 80)
    train = TrainConfig(0.5, 8, 2, clip="tanh", momentum=0.6, lr_decay=0.8)
    res = train_federated(model, train, [(X, Y)], global_iterations=2, seed=1)
    w, v = model.init_params(1), None
    for k in range(2):
        clip = make_clipper(at_iteration(train, k))
        for s in range(2):
            idx = batch_indices(len(X), 8, seed=1, party=0, iteration=k, step=s)
            g = _grads(model, w, X, Y, idx)
            u = {n: clip(g[n]) for n in w}
            v = u if v is None else {n: 0.6 * v[n] + u[n] for n in w}
            w = {n: w[n] - v[n] for n in w}
    for n in w:
        np.testing.assert_allclose(res.params[n], w[n], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res.velocities[0][n], v[n], rtol=1e-12, atol=1e-14)


def test_learning_rate_schedule() -> None:
    train = TrainConfig(0.8, 8, 1, lr_decay=0.5, lr_decay_every=2)
    assert [learning_rate_at(train, k) for k in range(6)] == [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]
    assert learning_rate_at(TrainConfig(0.8, 8, 1), 1000) == 0.8
    assert at_iteration(train, 3).learning_rate == 0.4 and at_iteration(train, 3).lr_decay == 0.5
    # folded into the clip polynomial: the update at iteration 2 is half the one at iteration 0
    g = {"w": np.array([0.3, -0.7, 1.1])}
    w = {"w": np.zeros(3)}
    step0 = update(BE, w, g, None, train, 0)[0]["w"]
    step2 = update(BE, w, g, None, train, 2)[0]["w"]
    np.testing.assert_allclose(step2, 0.5 * step0, rtol=1e-12)
    with pytest.raises(ParameterError, match="iteration must be a non-negative integer"):
        learning_rate_at(train, -1)


class _Counting(NumpyBackend):
    """The numpy backend counting scale/add/sub/poly calls."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def scale(self, a, c):
        self.calls["scale"] += 1
        return super().scale(a, c)

    def add(self, a, b):
        self.calls["add"] += 1
        return super().add(a, b)

    def sub(self, a, b):
        self.calls["sub"] += 1
        return super().sub(a, b)

    def poly(self, a, p):
        self.calls["poly"] += 1
        return super().poly(a, p)


@pytest.mark.parametrize(("momentum", "nesterov", "extra"), [
    (0.0, False, {}),
    (0.7, False, {"scale": 1, "add": 1}),
    (0.7, True, {"scale": 2, "add": 1, "sub": 1}),
])
def test_operations_per_parameter(momentum: float, nesterov: bool, extra: dict) -> None:
    """Momentum 0 runs SGD's operations; heavy ball adds 1 constant product and 1 addition per
    parameter, Nesterov 2 and 2 (from the second step: the first velocity is the clipped step)."""
    rng = np.random.default_rng(0)
    w = {k: rng.normal(size=(2, 3)) for k in ("a", "b")}
    g = {k: rng.normal(size=(2, 3)) for k in w}
    base = TrainConfig(0.5, 4, 1, clip="tanh")
    train = TrainConfig(0.5, 4, 1, clip="tanh", momentum=momentum, nesterov=nesterov)
    ref, be = _Counting(), _Counting()
    sgd_update(ref, w, g, base)
    _, v = update(be, w, g, None, train, 0)
    if momentum:
        be.calls.clear()
        update(be, w, g, v, train, 1)
    want = Counter(ref.calls)
    for op, n in extra.items():
        want[op] += n * len(w)
    assert be.calls == want


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"momentum": -0.1}, "momentum must be a number in \\[0, 1\\)"),
    ({"momentum": 1.0}, "momentum must be a number in \\[0, 1\\)"),
    ({"momentum": float("nan")}, "momentum must be"),
    ({"momentum": "0.5"}, "momentum must be"),
    ({"momentum": True}, "momentum must be"),
    ({"momentum": 0.5, "nesterov": "yes"}, "nesterov must be true or false"),
    ({"nesterov": True}, "nesterov needs a momentum > 0"),
    ({"lr_decay": 0.0}, "lr_decay must be a number in \\(0, 1\\]"),
    ({"lr_decay": 1.5}, "lr_decay must be"),
    ({"lr_decay": float("inf")}, "lr_decay must be"),
    ({"lr_decay_every": 0}, "lr_decay_every must be an integer >= 1"),
    ({"lr_decay_every": 2.0}, "lr_decay_every must be an integer"),
    ({"clip": "none", "momentum": 2.0}, "momentum must be"),  # validated with clip="none" too
])
def test_bad_momentum_and_schedule(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        TrainConfig(**{"learning_rate": 0.1, "batch_size": 8, "local_steps": 1, **kwargs}).validate()


def test_missing_velocity_entry_is_an_error() -> None:
    w = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(ParameterError, match="no velocity for parameter\\(s\\) b"):
        update(BE, w, w, {"a": np.zeros(2)}, TrainConfig(0.1, 4, 1, momentum=0.5), 0)
