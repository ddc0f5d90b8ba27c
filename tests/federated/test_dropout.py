"""A data holder drops out of a run with a t-out-of-N key (``--threshold``): real OpenFHE ciphertexts,
insecure `test` preset, N = 4 data holders, t = 3.

The in-process federation loses holder 2 in the middle of global iteration 2 (its handler disappears
after that iteration's second round, as a SuperNode that stops answering): the aggregator names it,
holder 0 rebuilds its share from 3 sealed pieces, and the iteration restarts with holders 0, 1 and 3.
The final model, threshold-decrypted with holder 0 answering for holder 2, equals the plaintext mirror
of a run in which holder 2 trains in iteration 1 only (its model and velocity left out from iteration 2,
the FedAvg weights renormalized) within TOL = 1e-3 (the engines' tolerance: test_engines.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhode.data import Normalizer
from rhode.errors import HolderUnavailableError, ParameterError, ProtocolError
from rhode.federated.config import RunConfig, model_configs
from rhode.federated.dataprep import load_holders, window_holders
from rhode.federated.engine import Federation
from rhode.federated.mirror import plain_fedavg
from rhode.federated.schema import Step
from rhode.nn.model import RecurrentModel

TOL = 1e-3


def _config(**over) -> RunConfig:
    base = dict(dataset="electricity", max_rows=800, parties=4, threshold=3, cell="rnn", hidden=3,
                timesteps=3, batch=8, learning_rate=0.7, local_steps=1, global_iterations=2,
                preset="test", seed=5)
    base.update(over)
    return RunConfig(**base).validate()


def _drop(fed: Federation, party: int, tag: str, after: int) -> None:
    """Remove ``party``'s handler after ``after`` rounds tagged ``tag`` (it stops answering)."""
    seen = [0]

    def on_round(rec) -> None:
        if rec.tag == tag:
            seen[0] += 1
            if seen[0] == after:
                fed.transport.handlers.pop(party, None)

    fed.transport.on_round = on_round


@pytest.mark.slow
def test_dropout_in_process_run_finishes_and_equals_the_mirror():
    cfg = _config()
    holders = load_holders(cfg)
    with Federation(cfg, [h.train for h in holders]) as fed:
        stats = fed.keygen(inspect=10)  # the model, decrypted twice
        handler_2 = fed.transport.handlers[2]
        window_holders(holders, Normalizer.from_stats(stats), cfg)
        parties = [(h.X, h.Y) for h in holders]
        poly, _, train_cfg = model_configs(cfg, holders[0].train.n_features)
        model = RecurrentModel(poly)
        enc = fed.agg.encrypt_model(model.init_params(cfg.seed))
        _drop(fed, 2, "iteration-2", after=2)
        losses = []
        for it in range(cfg.global_iterations):
            enc, rec = fed.agg.iteration(it, enc, stats)
            losses.append(rec.loss)
        assert fed.agg.active == [0, 1, 3]
        assert fed.agg.dropouts == [{"party": 2, "iteration": 2, "rebuilder": 0}]
        steps = [r.step for r in fed.transport.rounds]
        assert steps.count(Step.RECOVER.value) == 1 and steps.count(Step.ADOPT.value) == 1
        final = fed.agg.decrypt_model(enc)  # holder 0 answers for itself and for holder 2
        # holder 2 back and no dropout on record: holder 0 keeps its adopted share but is not told to
        # add it (STAND_INS), so every share counts once and the model decrypts the same
        fed.transport.handlers[2] = handler_2
        fed.agg.active, fed.agg.dropouts = [0, 1, 2, 3], []
        again = fed.agg.decrypt_model(enc)
        assert max(float(np.max(np.abs(again[k] - final[k]))) for k in final) <= TOL
    weights = [float(len(X)) for X, _ in parties]
    mirror = plain_fedavg(model, train_cfg, parties, cfg, weights,
                          participants=lambda k: [0, 1, 2, 3] if k == 0 else [0, 1, 3])
    assert max(float(np.max(np.abs(final[k] - mirror[-1][k]))) for k in final) <= TOL
    without = plain_fedavg(model, train_cfg, parties, cfg, weights)  # holder 2 never leaving
    assert max(float(np.max(np.abs(without[-1][k] - mirror[-1][k]))) for k in final) > 10 * TOL
    assert all(np.isfinite(v) for v in losses)


@pytest.mark.slow
def test_dropout_below_the_threshold_stops_the_run():
    """Two of 4 holders gone under t = 3: one error that says so (without --threshold the transport's
    error naming the holder stands: test_flower_deploy.py)."""
    cfg = _config(global_iterations=1)
    holders = load_holders(cfg)
    with Federation(cfg, [h.train for h in holders]) as fed:
        stats = fed.keygen()
        poly = model_configs(cfg, holders[0].train.n_features)[0]
        enc = fed.agg.encrypt_model(RecurrentModel(poly).init_params(cfg.seed))
        fed.transport.handlers.pop(1)
        fed.transport.handlers.pop(2)
        below = "2 data holder\\(s\\) remain, fewer than the key's threshold 3"
        with pytest.raises(ProtocolError, match=below):
            fed.agg.iteration(0, enc, stats)
    with pytest.raises(HolderUnavailableError, match="data holder\\(s\\) 1 did not answer"):
        from rhode.federated.dropout import recover
        fed.agg.run = RunConfig(**{**cfg.__dict__, "threshold": 0})
        recover(fed.agg, HolderUnavailableError("data holder(s) 1 did not answer 'x'", [1]), 0)


@pytest.mark.parametrize("threshold", [1, 2, 5, -1])
def test_dropout_threshold_must_be_a_strict_majority(threshold):
    with pytest.raises(ParameterError, match="invalid value for --threshold"):
        _config(threshold=threshold)


def test_dropout_sealed_pieces_open_only_for_their_recipient():
    """What the aggregator carries: a piece sealed by holder 1 for holder 3 opens for holder 3 only,
    not altered, not replayed to another recipient or joint key."""
    from rhode.errors import SerializationError
    from rhode.federated import sealing

    keys = {i: sealing.new_private_key() for i in range(4)}
    pub = {i: sealing.public_key(k) for i, k in keys.items()}
    bound = sealing.binding("tag-a", 1, 3)
    sealed = sealing.seal(keys[1], pub[3], b"piece of holder 1", bound)
    assert b"piece" not in sealed
    assert sealing.open_sealed(keys[3], pub[1], sealed, bound) == b"piece of holder 1"
    tampered = bytearray(sealed)
    tampered[20] ^= 1
    for key, peer, data, b in ((keys[2], pub[1], sealed, bound),  # another holder
                               (keys[3], pub[1], bytes(tampered), bound),  # altered on the way
                               (keys[3], pub[1], sealed, sealing.binding("tag-b", 1, 3)),  # other key
                               (keys[3], pub[1], sealed, sealing.binding("tag-a", 1, 2))):  # replayed
        with pytest.raises(SerializationError, match="does not open"):
            sealing.open_sealed(key, peer, data, b)
