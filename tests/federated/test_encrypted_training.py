"""Encrypted federated training and prediction equal the plaintext mirror (same polynomials, seed,
batches and weights), for RNN, GRU and LSTM with N = 3 data holders and 3 global iterations, on
real OpenFHE ciphertexts (insecure `test` preset, small dimensions)."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.federated.config import RunConfig
from rhode.federated.engine import EncryptedSession
from rhode.federated.run import model_configs, plain_fedavg, predict_plain
from rhode.mhe import preset
from rhode.nn.model import RecurrentModel

TOL = 1e-3


def synthetic_parties(n: int, T: int, d: int, rows: int = 40, seed: int = 0):
    """Noisy sine windows with a different phase and level per holder (non-IID)."""
    rng = np.random.default_rng(seed)
    parties = []
    for i in range(n):
        t = np.arange(rows + T) * 0.3 + i
        s = 0.6 * np.sin(t) + 0.1 * i + 0.05 * rng.normal(size=t.size)
        feats = np.stack([s] + [0.5 * np.cos(t + k) for k in range(1, d)], axis=1)
        X = np.stack([feats[j:j + T] for j in range(rows)])
        Y = s[T:T + rows, None]
        parties.append((np.clip(X, -1, 1), Y))
    return parties


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_encrypted_training_equals_mirror(cell):
    cfg = RunConfig(dataset="electricity", cell=cell, hidden=3, timesteps=3, batch=8, learning_rate=0.7,
                    local_steps=1, global_iterations=3, preset="test", seed=11)
    parties = synthetic_parties(3, cfg.timesteps, 2)
    poly_cfg, _, train_cfg = model_configs(cfg, 2)
    model = RecurrentModel(poly_cfg)
    weights = [float(len(X)) for X, _ in parties]
    mirror = plain_fedavg(model, train_cfg, parties, cfg, weights)

    session = EncryptedSession.create(preset("test"), 3, model, cfg.batch)
    enc = session.encrypt_model(model.init_params(cfg.seed))
    for it in range(cfg.global_iterations):
        local = [session.local_training(enc, X, Y, train_cfg, seed=cfg.seed, party=i, iteration=it)
                 for i, (X, Y) in enumerate(parties)]
        enc = session.aggregate(local, weights)
        # every iteration, not only the last: the decrypted global model tracks the mirror
        dec = session.decrypt_model(enc)
        for k in dec:
            assert dec[k].shape == mirror[it + 1][k].shape
            diff = float(np.max(np.abs(dec[k] - mirror[it + 1][k])))
            assert diff <= TOL, (cell, it, k, diff)
    # the model moved: the comparison is not between two copies of the initial weights
    moved = max(float(np.max(np.abs(mirror[-1][k] - mirror[0][k]))) for k in mirror[0])
    assert moved > 1e-2

    # a querier's prediction: only the querier can decrypt, and it equals the mirror's
    Xq = parties[1][0][:5]
    yhat, querier, switched = session.predict_encrypted(enc, Xq)
    got = session.backend.decode(yhat, querier.decrypt(switched))
    want = predict_plain(model, mirror[-1], Xq)
    assert got.shape == want.shape == (5, 1)
    assert float(np.max(np.abs(got - want))) <= TOL
    # the data holders together cannot decrypt the switched result (it is under the querier's key)
    try:
        fused = session.collective.decrypt(switched)
        wrong = session.backend.decode(yhat, fused)
        assert float(np.max(np.abs(wrong - want))) >= 1e-1
    except Exception as exc:  # OpenFHE may refuse to fuse shares of a foreign-key ciphertext
        from rhode.errors import RhodeError
        assert isinstance(exc, RhodeError)


@pytest.mark.slow
def test_ten_data_holders_in_one_process():
    cfg = RunConfig(dataset="electricity", cell="rnn", hidden=2, timesteps=2, batch=4, learning_rate=0.7,
                    local_steps=1, global_iterations=1, preset="test", seed=3)
    parties = synthetic_parties(10, cfg.timesteps, 1, rows=12, seed=5)
    poly_cfg, _, train_cfg = model_configs(cfg, 1)
    model = RecurrentModel(poly_cfg)
    weights = [float(len(X)) for X, _ in parties]
    mirror = plain_fedavg(model, train_cfg, parties, cfg, weights)
    session = EncryptedSession.create(preset("test"), 10, model, cfg.batch)
    assert session.collective.n_parties == 10
    enc = session.encrypt_model(model.init_params(cfg.seed))
    local = [session.local_training(enc, X, Y, train_cfg, seed=cfg.seed, party=i, iteration=0)
             for i, (X, Y) in enumerate(parties)]
    dec = session.decrypt_model(session.aggregate(local, weights))
    assert max(float(np.max(np.abs(dec[k] - mirror[1][k]))) for k in dec) <= TOL
