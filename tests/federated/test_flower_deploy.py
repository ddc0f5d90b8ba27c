"""rhode on a real Flower deployment: a SuperLink and 3 SuperNodes on localhost, TLS with certificates
generated here, the `test` preset and tiny dimensions (RNN h=4, T=3, batch 8, 1 local step).

One federation serves every test of this module (key generation is the expensive part):

1. training: key generation + global iteration 1; then a resumed run in which data holder 2's
   SuperNode is killed during iteration 2 (the run stops after round-timeout with an error naming
   holder 2, and the checkpoint of iteration 1 is kept); the node is restarted and a second resume
   completes iteration 2. The model, threshold-decrypted here with the holders' stored shares, equals
   what the sequential and the parallel in-process engines compute (same data, options and seed) to
   <= 1e-3: one protocol, three transports.
2. a querier's encrypted prediction through the deployment decrypts to the plaintext prediction of
   that model.
3. corrupted payloads sent to the real ClientApp are answered with rhode errors; the nodes survive.

Every process started here (SuperLink, SuperNodes, their SuperExec/ClientApp/ServerApp children, the
node-local training workers) is stopped at the end, and that is checked.
"""

from __future__ import annotations

import json
import os
import re
import stat

import numpy as np
import pytest
from _flower_util import (
    APP_DIR,
    N_PARTIES,
    decrypt_checkpoint,
    probe_app,
    run_config,
    start_reference,
    wait_for_round,
    write_csvs,
)
from _localhost import LocalFederation

from rhode.federated.checkpoint import read_checkpoint
from rhode.federated.files import load_public_keys
from rhode.federated.flower.querier import FlowerQuerier
from rhode.federated.flower.store import NodeStore
from rhode.federated.mirror import predict_plain

pytestmark = [pytest.mark.flower, pytest.mark.slow]

TOL = 1e-3
RUN_TIMEOUT = 900
FAULT_TIMEOUT = 30.0  # round-timeout of the run whose node is killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("flower")
    csvs = write_csvs(root)
    fed = LocalFederation(root / "federation", [{"data": str(c)} for c in csvs], tls=True)
    server = root / "server"
    rc = run_config(server)
    pool, reference = start_reference(csvs, rc)  # the in-process engine, in a child process meanwhile
    fed.start()
    pids = [fed.superlink.pid] + [p.pid for p in fed.supernodes]
    state = {"root": root, "csvs": csvs, "fed": fed, "server": server, "rc": rc, "reference": reference,
             "storages": [cfg["storage"] for cfg in fed.node_configs], "pids": pids}
    try:
        yield state
    finally:
        workers = [NodeStore(s, create=False).worker_pid() for s in state["storages"]]
        fed.stop()
        for p in list(getattr(pool, "_processes", {}).values()):  # a reference still running
            p.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        started = state["pids"] + [w for w in workers if w is not None]
        assert not [p for p in started if _alive(p)], "a process started by the test is still running"


def test_training_with_a_killed_node_resumes_and_equals_in_process(deployment):
    fed, server, rc = deployment["fed"], deployment["server"], deployment["rc"]

    # key generation and global iteration 1
    r = fed.run(APP_DIR, {**rc, "global-iterations": 1}, timeout=RUN_TIMEOUT)
    status = json.loads((server / "status.json").read_text())
    assert status["state"] == "done", (status, r.output[-3000:])
    assert read_checkpoint(server).iteration == 1
    for s in deployment["storages"]:  # each holder's secret share is on its node only, mode 0600
        assert stat.S_IMODE(os.stat(os.path.join(s, "party.key")).st_mode) == 0o600
    assert not list(server.glob("*.key"))

    # iteration 2 with data holder 2's SuperNode killed during it
    proc = fed.start_run(APP_DIR, {**rc, "resume": True, "round-timeout": FAULT_TIMEOUT})
    wait_for_round(server / "rounds.jsonl", "query.refresh", "iteration-2", RUN_TIMEOUT, proc)
    fed.kill_node(2)
    fed.wait(proc, RUN_TIMEOUT)
    status = json.loads((server / "status.json").read_text())
    assert status["state"] == "failed"
    # either the round timed out, or the SuperLink noticed the missing heartbeats first
    assert re.match(r"data holder(\(s\))? 2 \(node \d+\) (did not answer|failed in)", status["error"]), status
    assert status["error_kind"] == "HolderUnavailableError"  # a ProtocolError naming the holders
    assert read_checkpoint(server).iteration == 1  # the last checkpoint is kept

    # restart the node (same storage: its secret share) and resume: iteration 2 completes
    fed.start_node(2)
    deployment["pids"].append(fed.supernodes[2].pid)
    r = fed.run(APP_DIR, {**rc, "resume": True}, timeout=RUN_TIMEOUT)
    status = json.loads((server / "status.json").read_text())
    assert status["state"] == "done" and status["resumed_from"] == 1, (status, r.output[-3000:])
    iteration, model = decrypt_checkpoint(server, deployment["storages"])
    assert iteration == 2

    ref = deployment["reference"].result(timeout=RUN_TIMEOUT)
    meta = json.loads((server / "run.json").read_text())
    assert meta["global_stats"]["count"] == ref["count"]
    # each engine reveals the mean of column j as a slot scaled by 2^-exps[j], to within its keys'
    # reveal_error_bound (docs/security.md, noise flooding for the decryption budget); sums = mean * count
    deployed = load_public_keys(server).params.reveal_error_bound(len(deployment["csvs"]))
    bound = ref["reveal_error_bound"] + deployed
    atol = bound * np.exp2(ref["exps"]) * ref["count"]
    err = np.abs(np.asarray(meta["global_stats"]["sum"]) - ref["sum"])
    assert np.all(err <= atol), (err, atol)
    for k, want in ref["models"][-1].items():
        diff = float(np.max(np.abs(model[k] - want)))
        assert diff <= TOL, (k, diff)
    moved = max(float(np.max(np.abs(ref["models"][-1][k] - ref["models"][0][k]))) for k in model)
    assert moved > 1e-3  # iteration 2 changed the model: the comparison is not vacuous
    hist = meta["history"]
    assert [h["iteration"] for h in hist] == [1, 2] and all(h["refresh_rounds"] >= 1 for h in hist)
    # the third engine: the parallel in-process engine (holders in 2 worker processes) agrees too
    for k, want in ref["parallel_models"][-1].items():
        assert float(np.max(np.abs(model[k] - want))) <= TOL, k
    deployment["model"] = model


def test_querier_prediction_decrypts_correctly(deployment):
    fed, server, root = deployment["fed"], deployment["server"], deployment["root"]
    if "model" not in deployment:
        pytest.fail("needs the trained model of the training test")
    q = FlowerQuerier(server)
    X, _ = q.windows(deployment["csvs"][1])
    X = X[:6]
    (root / "request.bin").write_bytes(q.request(X))
    r = fed.run(APP_DIR, {**deployment["rc"], "mode": "predict", "query-in": str(root / "request.bin"),
                          "query-out": str(root / "response.bin")}, timeout=RUN_TIMEOUT)
    assert (root / "response.bin").exists(), r.output[-3000:]
    y = q.decrypt((root / "response.bin").read_bytes())
    want = predict_plain(q.model, deployment["model"], X)
    assert y.shape == want.shape == (6, 1)
    assert float(np.max(np.abs(y - want))) <= TOL
    assert float(np.std(want)) > 0  # distinct windows, distinct predictions


def test_corrupted_payloads_get_rhode_errors_and_nodes_survive(deployment):
    fed, root = deployment["fed"], deployment["root"]
    if not (deployment["server"] / "context.rhode").exists():
        pytest.fail("needs the keys of the training test")
    out = root / "probe.json"
    app = probe_app(root / "probe-app")
    r = fed.run(app, {**deployment["rc"], "probe-out": str(out)}, timeout=RUN_TIMEOUT)
    assert out.exists(), r.output[-3000:]
    res = json.loads(out.read_text())
    for probe in ("refresh_flipped_byte", "refresh_truncated", "pcks_garbage", "not_a_rhode_payload"):
        answers = res[probe]
        assert len(answers) >= N_PARTIES
        for a in answers:
            assert a["answered"] and "flower_error" not in a, (probe, a)
            assert a["config"]["rhode-error-kind"] == "SerializationError", (probe, a)
            assert a["config"]["rhode-error"]
    assert sorted(a["config"]["party"] for a in res["hello_after"] if "config" in a
                  and "party" in a["config"]) == list(range(N_PARTIES))
    assert all(p.poll() is None for p in fed.supernodes)
