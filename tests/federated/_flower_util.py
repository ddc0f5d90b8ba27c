"""Shared helpers of the Flower tests: tiny CSV data holders and the run configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

APP_DIR = Path(__file__).resolve().parents[2] / "deploy" / "flower"
N_PARTIES = 3


def write_csvs(directory: Path, n: int = N_PARTIES, rows: int = 48, seed: int = 0) -> list[Path]:
    """One CSV per data holder: a time column, the target 'load' (noisy sine with a per-holder phase
    and level) and a feature 'temp'."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        t = np.arange(rows) * 0.35 + 0.7 * i
        load = 10 + 3 * np.sin(t) + 0.5 * i + 0.3 * rng.normal(size=rows)
        temp = 20 + 4 * np.cos(t + 0.3) + 0.2 * rng.normal(size=rows)
        p = Path(directory) / f"holder-{i}.csv"
        with open(p, "w") as fh:
            fh.write("time,load,temp\n")
            for k in range(rows):
                fh.write(f"2024-01-{1 + k // 24:02d} {k % 24:02d}:00,{load[k]:.4f},{temp[k]:.4f}\n")
        paths.append(p)
    return paths


def run_config(server_dir: Path, **over) -> dict:
    """The tests' run configuration (the `test` preset and tiny dimensions)."""
    cfg = {"n-parties": N_PARTIES, "server-dir": str(server_dir), "preset": "test", "cell": "rnn",
           "hidden": 4, "timesteps": 3, "batch": 8, "learning-rate": 0.5, "local-steps": 1,
           "global-iterations": 2, "seed": 3, "target": "load", "round-timeout": 120.0,
           "connect-timeout": 60.0}
    cfg.update(over)
    return cfg


def in_process_reference(csvs: list[Path], rc: dict, queries=None, workers: int = 1) -> dict:
    """What an in-process engine (sequential, or ``workers`` worker processes) computes with the same
    data, options and seed: the decrypted global model after each iteration, the revealed global
    statistics, and (for ``queries``, windows (n, T, d)) the querier's predictions with the final model."""
    from rhode.federated.config import RunConfig
    from rhode.federated.dataprep import load_holders, magnitude_exponents, stat_values
    from rhode.federated.engine import Federation
    from rhode.federated.flower.settings import DeployConfig

    dc = DeployConfig.from_run_config(rc)
    cfg = RunConfig(**{**dc.run.to_dict(), "data": tuple(str(c) for c in csvs), "features": dc.run.features})
    holders = load_holders(cfg)
    with Federation(cfg, [h.train for h in holders], workers=workers) as fed:
        total = fed.keygen(inspect=14 * cfg.global_iterations)  # the model after each iteration (LSTM: 14)
        enc = fed.agg.encrypt_model(fed.agg.model.init_params(cfg.seed))
        models = []
        for it in range(cfg.global_iterations):
            enc, _ = fed.agg.iteration(it, enc, total)
            models.append(fed.agg.decrypt_model(enc))
        out = {"models": models, "count": total.count, "sum": total.sum, "sumsq": total.sumsq,
               "exps": np.max([magnitude_exponents(stat_values(h.train)) for h in holders], axis=0),
               "reveal_error_bound": fed.agg.ctx.params.reveal_error_bound(cfg.n_parties)}
        if queries is not None:
            out["predictions"] = fed.predict(enc, queries)
    return out


def decrypt_checkpoint(server_dir: Path, storages: list[Path]) -> tuple[int, dict]:
    """Threshold-decrypt the deployment's checkpoint with every data holder's stored secret share (the
    test plays the unanimous data holders): (iteration, name -> array)."""
    import json

    from rhode.federated import codec as K
    from rhode.federated.checkpoint import read_checkpoint
    from rhode.federated.config import RunConfig, model_configs
    from rhode.federated.files import load_public_keys
    from rhode.mhe import Party
    from rhode.mhe.protocols import decryption
    from rhode.mhe.protocols.base import ProtocolKind, fold
    from rhode.nn.model import RecurrentModel

    server_dir = Path(server_dir)
    meta = json.loads((server_dir / "run.json").read_text())
    ctx = load_public_keys(server_dir)
    cfg = RunConfig.from_dict(meta["config"])
    model = RecurrentModel(model_configs(cfg, int(meta["n_features"]))[0])
    backend = K.backend_for(ctx, model, cfg.batch, lambda cts: cts)
    parties = [Party.load(ctx, Path(s) / "party.key") for s in storages]
    ckpt = read_checkpoint(server_dir)
    params = K.model_from_checkpoint(ctx, backend, model, ckpt.model)
    out = {}
    for name, t in params.items():
        cts = backend.ciphertexts(t)
        shares = [decryption.gen_share(p, cts) for p in parties]
        agg = fold(ctx, decryption.aggregate, shares, ProtocolKind.DECRYPTION)
        out[name] = backend.decode(t, decryption.finalize(ctx, agg))
    return ckpt.iteration, out


def start_reference(csvs: list[Path], rc: dict):
    """Run :func:`in_process_reference` in a child process (it overlaps the deployment's waiting);
    returns (pool, future): shut the pool down at the end."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return pool, pool.submit(_both_in_process_engines, csvs, rc)


def _both_in_process_engines(csvs: list[Path], rc: dict) -> dict:
    out = in_process_reference(csvs, rc)
    out["parallel_models"] = in_process_reference(csvs, rc, workers=2)["models"]
    return out


def wait_for_round(rounds_log: Path, step: str, tag: str, timeout: float, proc=None) -> None:
    """Block until the aggregator's rounds.jsonl records ``step`` within ``tag`` (e.g. iteration-2);
    fail at once if ``proc`` (the ``flwr run`` process) ended first."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before '{step}' in {tag}")
        if rounds_log.exists():
            for line in rounds_log.read_text().splitlines():
                rec = json.loads(line)
                if rec["step"] == step and rec["tag"] == tag:
                    return
        time.sleep(0.5)
    raise TimeoutError(f"no {step} round in {tag} within {timeout} s")


PROBE_SERVER = '''
"""A ServerApp that sends corrupted payloads to rhode's real ClientApp (test only)."""
import json
import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict
from flwr.serverapp import ServerApp
from rhode.federated.flower.settings import DeployConfig
from rhode.federated.flower.wire import from_recorddict, to_recorddict
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, Step
from rhode.mhe import serial as S
from rhode.mhe.protocols import refresh

app = ServerApp()


def ask(grid, nodes, probes, enough=None, timeout=300):
    """Push every probe (name, message type, content factory) to every node at once (a SuperNode
    answers queued messages back to back); collect the answers until all came, ``enough`` says they
    suffice, or the timeout. Returns name -> node -> answer."""
    import time
    sent = [(name, n, Message(content(), dst_node_id=n, message_type=step))
            for name, step, content in probes for n in nodes]
    ids = dict(zip(grid.push_messages([m for _, _, m in sent]), [(name, n) for name, n, _ in sent]))
    got = {}
    deadline = time.time() + timeout
    while len(got) < len(ids) and time.time() < deadline:
        for m in grid.pull_messages([i for i in ids if i not in got]):
            got[m.metadata.reply_to_message_id] = m
        if enough is not None and enough(got):
            break
        time.sleep(0.1)
    out = {}
    for i, (name, node) in ids.items():
        m = got.get(i)
        if m is None:
            a = {"answered": False}
        elif m.has_error():
            a = {"answered": True, "flower_error": m.error.reason}
        else:
            a = {"answered": True, "config": from_recorddict(m.content).config}
        out.setdefault(name, {})[node] = a
    return out


@app.main()
def main(grid, context):
    rc = context.run_config
    dc = DeployConfig.from_run_config(rc)
    ctx = S.context_from_bytes(open(rc["server-dir"] + "/context.rhode", "rb").read())

    def hello():
        return to_recorddict(Payload({Field.FINGERPRINT.value: dc.fingerprint()}))

    def all_parties(got):
        return len(got) >= dc.n_parties
    # the live data holders (a node killed earlier may still be listed by the SuperLink for a while)
    first = ask(grid, list(grid.get_node_ids()), [("hello", Step.HELLO.value, hello)], enough=all_parties,
                timeout=120)["hello"]
    nodes = [n for n, a in first.items() if a["answered"]]
    good = refresh.prepare(ctx, [ctx.encrypt(np.array([0.5]))]).to_bytes(ctx)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    results = ask(grid, nodes, [
        ("refresh_flipped_byte", Step.REFRESH.value, lambda: to_recorddict(
            Payload({Field.COUNT.value: 1}, {Field.REQUEST.value: bytes(flipped)}))),
        ("refresh_truncated", Step.REFRESH.value, lambda: to_recorddict(
            Payload({Field.COUNT.value: 1}, {Field.REQUEST.value: good[:-100]}))),
        ("pcks_garbage", Step.KEY_SWITCH.value, lambda: to_recorddict(
            Payload({}, {Field.CTS.value: bytes(range(256)) * 8, Field.QUERIER_PK.value: b"x"}))),
        ("not_a_rhode_payload", Step.REFRESH.value, lambda: RecordDict(
            {"arrays": ArrayRecord({"x": Array(np.zeros(3))})})),
        ("hello_after", Step.HELLO.value, hello),
    ], timeout=240)
    # Flower 1.30's SuperLink sometimes fails to store a reply (sqlite FOREIGN KEY error in its object
    # store, logged by the SuperNode as "Failed to send message"): the node is alive but that answer
    # is lost. Ask the nodes whose hello got lost once more; a dead node stays unanswered.
    lost = [n for n, a in results["hello_after"].items() if not a["answered"]]
    if lost:
        results["hello_after"].update(ask(grid, lost, [("hello_after", Step.HELLO.value, hello)],
                                          timeout=120)["hello_after"])
    with open(rc["probe-out"], "w") as fh:
        json.dump({k: list(v.values()) for k, v in results.items()}, fh)
'''


def probe_app(directory: Path) -> Path:
    """A copy of deploy/flower whose ServerApp is :data:`PROBE_SERVER` (the ClientApp is rhode's)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = (APP_DIR / "pyproject.toml").read_text()
    text = text.replace('serverapp = "rhode.federated.flower.server_app:app"',
                        'serverapp = "probe_server:app"')
    text = text.replace('name = "rhode-flower"', 'name = "rhode-flower-probe"')
    text = text.replace("[tool.flwr.app.config]\n", '[tool.flwr.app.config]\nprobe-out = ""\n')
    (directory / "pyproject.toml").write_text(text)
    (directory / "probe_server.py").write_text(PROBE_SERVER)
    return directory


def relay_transport(rc: dict, node_configs: list[dict]):
    """A LocalTransport whose data holders are reached as a Flower node reaches them: every message
    relayed as bytes by :func:`rhode.federated.flower.relay.forward` (what the ClientApp does) to the
    node's holder service (a real process per holder), without a SuperLink. Stop the services with
    ``NodeStore(storage).kill_worker()``."""
    import os

    from rhode.federated.flower import relay
    from rhode.federated.payload import pack_bundle, unpack_bundle
    from rhode.federated.transport import LocalTransport

    def handler(node_config):
        return lambda step, p: unpack_bundle(pack_bundle(relay.forward(
            step, unpack_bundle(pack_bundle(p)), rc, node_config, os.getpid())))

    t = LocalTransport({c["party-index"]: handler(c) for c in node_configs})
    t.keeps_public_keys = True
    return t
