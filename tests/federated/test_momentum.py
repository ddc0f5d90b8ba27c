"""Momentum under encryption: every data holder's velocity is its own state between global iterations,
carried by the one protocol (blob VELOCITY: back to the aggregator with the local model, back to the
same holder with its next TRAIN request), saved encrypted in the checkpoint and restored on resume.

* the encrypted run equals the mirror (``rhode.nn.fedavg.train_federated``, the same update code) with
  mu = 0.7 and a step-decaying learning rate, sequential and parallel engines;
* a run stopped after its first iteration and resumed from the checkpoint by a NEW federation (the
  stored keys and shares) equals the uninterrupted run;
* momentum adds constant products and additions to the holders' jobs, and no rotation;
* with momentum 0 no velocity is sent or stored.

Tolerance: TOL = 1e-3 on weights and velocities, as tests/federated/test_engines.py: the `test`
preset's refreshes re-encrypt at a 40-bit scale and the flooded threshold decryption leaves about
2^-20 relative error per revealed value; momentum adds one constant product by mu < 1 (it damps earlier
noise rather than amplifying it) and one addition per parameter and step, and the velocities are
refreshed with the model. Measured here: encrypted vs mirror about 1e-6 after 2 iterations x 2 local
steps. A wrong velocity is far above TOL: a lost (reset) one moves the weights by > 0.1, and the
holders' velocities differ from each other by > 1e-2 (checked), so one sent to the wrong holder or
averaged is caught on the velocities themselves (skewed split: holders with different data). The
resume comparison (two encrypted runs that differ only by refresh and decryption noise) uses 1e-4, as
tests/federated/test_resume.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rhode.data import Normalizer
from rhode.federated import codec as K
from rhode.federated.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from rhode.federated.config import RunConfig, model_configs, run_fingerprint
from rhode.federated.dataprep import load_holders, window_holders
from rhode.federated.engine import Federation, parties_dir
from rhode.federated.files import load_public_keys, save_public_keys
from rhode.federated.mirror import plain_fedavg
from rhode.federated.schema import Field, Step
from rhode.mhe import LocalCollective, preset
from rhode.mhe.evaluator import Evaluator
from rhode.nn import FedResult, ModelConfig, RecurrentModel, TrainConfig, train_federated, train_locally
from rhode.nn.train import BatchKey
from rhode.packing import plan as make_plan
from rhode.tensor import codec as TC
from rhode.tensor.cipher import CipherBackend

TOL = 1e-3
RESUME_TOL = 1e-4


def _config(**over) -> RunConfig:
    base = dict(dataset="electricity", max_rows=700, parties=3, cell="rnn", hidden=3, timesteps=3, batch=8,
                partition="skew", learning_rate=0.6, local_steps=2, global_iterations=2, momentum=0.7,
                lr_decay=0.8, preset="test", seed=5)
    base.update(over)
    return RunConfig(**base).validate()


def _setup(cfg: RunConfig, workers: int = 1, out=None):
    """A federation after key generation; (federation, stats, holders' windows, polynomial model)."""
    holders = load_holders(cfg)
    fed = Federation(cfg, [h.train for h in holders], parties_dir(out) if out else None, workers=workers)
    stats = fed.keygen(inspect=200)  # the tests decrypt the model after every iteration
    window_holders(holders, Normalizer.from_stats(stats), cfg)
    parties = [(h.X, h.Y) for h in holders]
    return fed, stats, parties, holders[0].train.n_features


def _mirror(cfg: RunConfig, parties, n_features: int) -> FedResult:
    """The mirror (what federated.mirror.plain_fedavg runs), with every party's final velocity."""
    poly, _, train_cfg = model_configs(cfg, n_features)
    assert train_cfg.momentum == cfg.momentum and train_cfg.lr_decay == cfg.lr_decay
    weights = [float(len(X)) for X, _ in parties]
    res = train_federated(RecurrentModel(poly), train_cfg, parties, global_iterations=cfg.global_iterations,
                          seed=cfg.seed, weights=weights)
    models = plain_fedavg(RecurrentModel(poly), train_cfg, parties, cfg, weights)
    assert all(_max_diff(a, b) == 0 for a, b in zip(models, res.models, strict=True))
    return res


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def _spy(fed: Federation) -> list[tuple[str, int, list[str]]]:
    """Record (step, party, blob names) of every request the aggregator sends, and ("answer:" step,
    party, blob names) of every answer."""
    seen: list = []
    exchange = fed.transport.exchange

    def spy(step, requests, timeout):
        seen.extend((step.value, i, sorted(p.blobs)) for i, p in requests.items())
        answers = exchange(step, requests, timeout)
        seen.extend((f"answer:{step.value}", i, sorted(p.blobs)) for i, p in answers.items())
        return answers

    fed.transport.exchange = spy
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_encrypted_momentum_equals_mirror(workers):
    cfg = _config()
    fed, stats, parties, d = _setup(cfg, workers)
    try:
        mirror = _mirror(cfg, parties, d)
        seen = _spy(fed)
        enc = fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed))
        for it in range(cfg.global_iterations):
            enc, _ = fed.agg.iteration(it, enc, stats)
            assert _max_diff(fed.agg.decrypt_model(enc), mirror.models[it + 1]) <= TOL, (workers, it)
        assert _max_diff(mirror.models[-1], mirror.models[0]) > 1e-2  # the model moved
        # every holder's own velocity (decrypted here for the test only), against the mirror's party i
        for i, want in enumerate(mirror.velocities):
            assert _max_diff(fed.agg.decrypt_model(fed.agg.velocities[i]), want) <= TOL, i
            assert _max_diff(want, mirror.velocities[(i + 1) % 3]) > 1e-2  # holders' velocities differ
        # each holder's velocity went back to that holder only, from the second iteration on
        train = [(i, blobs) for step, i, blobs in seen if step == Step.TRAIN.value]
        with_v = [i for i, blobs in train if Field.VELOCITY.value in blobs]
        assert sorted(with_v) == [0, 1, 2]  # iteration 2's training jobs; not iteration 1's, not the loss
        back = [i for step, i, blobs in seen if step.startswith("answer:") and Field.VELOCITY.value in blobs]
        assert sorted(back) == [0, 0, 1, 1, 2, 2]  # every training job's end, both iterations
        assert sorted(fed.agg.velocities) == [0, 1, 2]
    finally:
        fed.close()


@pytest.mark.slow
def test_resumed_momentum_run_equals_uninterrupted(tmp_path):
    cfg = _config()
    out = tmp_path / "run"
    out.mkdir()
    fed, stats, parties, d = _setup(cfg, out=out)
    try:
        agg = fed.agg
        save_public_keys(out, agg.ctx)
        enc, _ = agg.iteration(0, agg.encrypt_model(agg.model.init_params(cfg.seed)), stats)
        write_checkpoint(out, Checkpoint(1, run_fingerprint(cfg), agg.checkpoint_blobs(enc), {}))
        enc, _ = agg.iteration(1, enc, stats)  # the uninterrupted run goes on
        whole = agg.decrypt_model(enc)
    finally:
        fed.close()
    ckpt = read_checkpoint(out)
    names = [k for k in ckpt.model if k.startswith("velocity/")]
    n_params = len(ckpt.model) - len(names)
    assert len(names) == 3 * n_params and "velocity/2/W" in names  # every holder's, encrypted
    # a NEW federation: the stored public keys, the holders' stored secret shares, the checkpoint
    with Federation(cfg, [h.train for h in load_holders(cfg)], parties_dir(out)) as again:
        again.attach(load_public_keys(out), d)
        resumed = again.agg.restore(ckpt.model)
        assert sorted(again.agg.velocities) == [0, 1, 2]
        resumed, _ = again.agg.iteration(1, resumed, stats)
        got = again.agg.decrypt_model(resumed)
    assert _max_diff(got, whole) <= RESUME_TOL
    assert _max_diff(got, _mirror(cfg, parties, d).models[-1]) <= TOL


@pytest.mark.slow
def test_momentum_zero_sends_and_stores_no_velocity():
    cfg = _config(momentum=0.0, local_steps=1, global_iterations=1)
    fed, stats, parties, d = _setup(cfg)
    try:
        seen = _spy(fed)
        enc, _ = fed.agg.iteration(0, fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed)), stats)
        assert seen and not [s for s in seen if Field.VELOCITY.value in s[2]]
        assert fed.agg.velocities == {}
        assert list(fed.agg.checkpoint_blobs(enc)) == list(fed.agg.model.param_shapes)
        assert _max_diff(fed.agg.decrypt_model(enc), _mirror(cfg, parties, d).models[1]) <= TOL
    finally:
        fed.close()


@pytest.mark.slow
def test_momentum_adds_no_rotation():
    """Two global iterations of two local steps of one holder on the cipher backend, the way a job runs
    them (velocity made export-ready and encoded in its own form, the model exported in nat form,
    both refreshed by the aggregator): heavy ball and Nesterov run exactly SGD's rotations and
    ciphertext products. The difference is constant products and additions, per parameter: heavy ball
    1 + 1 per step, except the first step ever (its velocity is the clipped step itself); Nesterov
    2 + 2 per step, 1 + 1 in the first."""
    params_ = preset("test")
    model = RecurrentModel(ModelConfig("rnn", 2, 3))
    plan = make_plan(3, 8, params_.slots)
    col = LocalCollective(params_, 3, sorted(plan.rotation_indices()), measure_bytes=False)
    be = CipherBackend(Evaluator(col.context), plan, col.refresh, eager_margin=None)
    rng = np.random.default_rng(0)
    windows = rng.uniform(-1, 1, (40, 3, 2)), rng.uniform(-1, 1, (40, 1))
    counts = {}
    for mu, nesterov in ((0.0, False), (0.7, False), (0.7, True)):
        train = TrainConfig(0.5, 8, 2, momentum=mu, nesterov=nesterov)
        params = {k: be.param(v) for k, v in model.init_params(1).items()}
        velocity, per_it = None, []
        for it in range(2):
            be.reset_counters()
            params, velocity = train_locally(be, model, params, windows, train, BatchKey(0, 0, it),
                                             velocity=velocity)
            if velocity is not None:
                K.prepare_velocity(be, velocity)
                K.velocity_blob(col.context, model, velocity).encode()
            be.prepare_export(list(params.values()))
            per_it.append(be.counters()["total"])
            params = {k: be.import_param(TC.export_param(v), v.shape) for k, v in params.items()}
            be.refresh([*params.values(), *(velocity or {}).values()])
        counts[(mu, nesterov)] = per_it
    sgd, hb, nag = counts[(0.0, False)], counts[(0.7, False)], counts[(0.7, True)]
    for c, s in [*zip(hb, sgd), *zip(nag, sgd)]:
        for op in ("rotations", "hoisted_rotations", "ct_ct_mults", "ct_pt_mults", "relinearizations"):
            assert c[op] == s[op], op
    n = len(model.param_shapes)
    for op in ("const_mults", "additions"):
        assert [c[op] - s[op] for c, s in zip(hb, sgd)] == [n, 2 * n], op
        assert [c[op] - s[op] for c, s in zip(nag, sgd)] == [3 * n, 4 * n], op
    assert sgd[0]["rotations"] > 0


def test_momentum_options_reach_every_engine(tmp_path):
    """RunConfig -> TrainConfig (model_configs), the CLI flags, and the Flower run config."""
    from click.testing import CliRunner

    from rhode.cli import main
    from rhode.federated.flower.settings import DeployConfig

    cfg = _config(momentum=0.6, nesterov=True, lr_decay=0.9, lr_decay_every=3)
    _, _, train = model_configs(cfg, 1)
    assert (train.momentum, train.nesterov, train.lr_decay, train.lr_decay_every) == (0.6, True, 0.9, 3)
    assert run_fingerprint(cfg) != run_fingerprint(_config(momentum=0.6, lr_decay=0.9, lr_decay_every=3))
    dc = DeployConfig.from_run_config({"n-parties": 3, "momentum": 0.7, "nesterov": True, "lr-decay": 0.5,
                                       "lr-decay-every": 2, "batch": 8})
    assert (dc.run.momentum, dc.run.nesterov, dc.run.lr_decay, dc.run.lr_decay_every) == (0.7, True, 0.5, 2)
    out = str(tmp_path / "run")
    r = CliRunner().invoke(main, ["train", "--dataset", "electricity", "--out", out, "--momentum", "1.5"])
    assert r.exit_code == 2 and "invalid value for --momentum" in r.output
    args = ["train", "--dataset", "electricity", "--out", out, "--nesterov", "--momentum", "0"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--nesterov" in r.output and "--momentum > 0" in r.output


@pytest.mark.parametrize(("over", "option"), [
    ({"momentum": 1.0}, "--momentum"),
    ({"momentum": -0.5}, "--momentum"),
    ({"momentum": "high"}, "--momentum"),
    ({"nesterov": "yes", "momentum": 0.5}, "--nesterov"),
    ({"nesterov": True, "momentum": 0.0}, "--nesterov"),
    ({"lr_decay": 0.0}, "--lr-decay"),
    ({"lr_decay": 2.0}, "--lr-decay"),
    ({"lr_decay_every": 0}, "--lr-decay-every"),
])
def test_bad_momentum_options_name_the_option(over, option):
    from rhode.errors import ParameterError

    with pytest.raises(ParameterError, match=f"invalid value for {option}:"):
        _config(**over)


@pytest.mark.slow
def test_flower_policy_keeps_and_restores_the_velocities(tmp_path):
    """The deployment's policy (DeploymentRun) with its data holders as a Flower node runs them (every
    message relayed as bytes to the node's holder service, a real process per holder), but without a
    SuperLink: one iteration, then a resumed DeploymentRun continues from the checkpoint's model and
    velocities; the result equals the sequential in-process engine's two uninterrupted iterations to
    TOL. (A training job carried from one iteration to the next, with the loss riding on it, crosses
    process boundaries in the parallel engine: test_engines.py, and in bench/deployment.py's runs.)"""
    from _flower_util import decrypt_checkpoint, in_process_reference, relay_transport, run_config, write_csvs

    from rhode.federated.flower.server import ROUNDS_LOG, DeploymentRun
    from rhode.federated.flower.settings import DeployConfig
    from rhode.federated.flower.store import EVAL_KEYS, NodeStore

    csvs = write_csvs(tmp_path)
    rc = run_config(tmp_path / "server", **{"momentum": 0.7, "lr-decay": 0.8})
    nodes = [{"party-index": i, "data": str(c), "storage": str(tmp_path / f"s{i}")}
             for i, c in enumerate(csvs)]

    try:
        rc1 = {**rc, "global-iterations": 1}
        dc1 = DeployConfig.from_run_config(rc1)
        first = DeploymentRun(dc1, relay_transport(rc1, nodes))
        # the rotation keys in chunks of 3 (as a 2^15 ring's are): the extra ROTATION_KEYS rounds install
        # them in every holder service, which trains with them and stores them for the resumed run
        first.agg.rotation_round_bytes = 3 * dc1.params.rotation_key_bytes
        first.train()
        log = (tmp_path / "server" / ROUNDS_LOG).read_text().splitlines()
        steps = [json.loads(line)["step"] for line in log]
        chunks = first.agg.rotation_chunks
        assert len(chunks) >= 3 and max(map(len, chunks)) == 3
        assert steps.count(Step.ROTATION_KEYS.value) == len(chunks) + 1
        ckpt = read_checkpoint(tmp_path / "server")
        params = [k for k in ckpt.model if not k.startswith("velocity/")]
        assert [k for k in ckpt.model if k not in params] == [
            f"velocity/{i}/{k}" for i in range(3) for k in params]  # every holder's, encrypted
        rc2 = {**rc, "global-iterations": 2, "resume": True}
        summary = DeploymentRun(DeployConfig.from_run_config(rc2), relay_transport(rc2, nodes)).train()
        iteration, model = decrypt_checkpoint(tmp_path / "server", [n["storage"] for n in nodes])
    finally:
        for n in nodes:
            NodeStore(n["storage"]).kill_worker()
    assert summary["resumed_from"] == 1 and iteration == 2
    want = in_process_reference(csvs, rc)["models"][1]
    assert _max_diff(model, want) <= TOL
    assert NodeStore(nodes[1]["storage"]).has(EVAL_KEYS)
