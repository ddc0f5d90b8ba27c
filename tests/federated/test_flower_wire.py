"""The Flower deployment's building blocks without a deployment: payloads as Flower records and as
bundles (bytes only, every corruption a rhode error), run/node configuration errors, the aggregator's
rejection of a corrupted answer (naming the data holder), the node-local holder service (rhode errors
answered, the service kept; the whole protocol through it without a SuperLink is
tests/federated/test_momentum.py::test_flower_policy_keeps_and_restores_the_velocities), and the
generated TLS certificates."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from _localhost import config_arg, make_certificates

from rhode.errors import ParameterError, ProtocolError, RhodeError, SerializationError
from rhode.federated.aggregator import Aggregator
from rhode.federated.flower import relay
from rhode.federated.flower.settings import DeployConfig, NodeConfig
from rhode.federated.flower.store import NodeStore
from rhode.federated.flower.wire import from_recorddict, to_recorddict
from rhode.federated.payload import ERROR_KEY, Payload, error_payload, pack_bundle, unpack_bundle
from rhode.federated.schema import Step
from rhode.federated.transport import LocalTransport
from rhode.mhe import MheContext

RC = {"n-parties": 3, "server-dir": "unused", "preset": "test", "hidden": 4, "timesteps": 3, "batch": 8,
      "target": "load", "round-timeout": 5.0}


def _payload() -> Payload:
    return Payload({"iteration": 2, "job": "abc", "levels": [1, 2, 3], "ok": True, "lr": 0.5},
                   {"model": bytes(range(256)) * 3, "empty": b""})


def test_payload_travels_as_raw_bytes_arrays_and_scalars():
    p = _payload()
    rd = to_recorddict(p)
    arrays = rd.array_records["blobs"]
    assert {n: (a.dtype, a.stype) for n, a in arrays.items()} == {"model": ("bytes", "raw"),
                                                                   "empty": ("bytes", "raw")}
    assert not any(isinstance(v, (bytes, bytearray)) for v in rd.config_records["config"].values())
    back = from_recorddict(rd)
    assert back.config == p.config and back.blobs == p.blobs
    assert back.nbytes() == 768


def test_records_that_are_not_rhode_payloads_are_rejected():
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    with pytest.raises(SerializationError, match="not a rhode payload"):
        from_recorddict(RecordDict({"arrays": ArrayRecord({"x": Array(np.zeros(3))})}))
    bad = RecordDict({"config": ConfigRecord({}), "blobs": ArrayRecord({"x": Array(np.zeros(3))})})
    with pytest.raises(SerializationError, match="not a raw-bytes array"):
        from_recorddict(bad)
    with pytest.raises(SerializationError, match="unsupported type"):
        to_recorddict(Payload({"x": {"nested": 1}}))


def test_bundle_round_trip_and_every_corruption_is_a_rhode_error():
    p = _payload()
    data = pack_bundle(p)
    back = unpack_bundle(data)
    assert back.config == p.config and back.blobs == p.blobs
    for pos in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[pos] ^= 0x01
        with pytest.raises(SerializationError):
            unpack_bundle(bytes(damaged))
    for cut in (0, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(SerializationError):
            unpack_bundle(data[:cut])
    with pytest.raises(SerializationError):
        unpack_bundle(data + b"\0")


def test_payload_fields_are_typed():
    p = _payload()
    assert p.get("iteration", int) == 2 and p.get("lr", float) == 0.5 and p.int_list("levels") == [1, 2, 3]
    assert p.get("iteration", float) == 2.0
    with pytest.raises(SerializationError, match="'job' must be int"):
        p.get("job", int)
    with pytest.raises(SerializationError, match="'ok' must be int"):
        p.get("ok", int)
    with pytest.raises(SerializationError, match="no 'missing' field"):
        p.get("missing", str)
    with pytest.raises(SerializationError, match="no 'nope' payload"):
        p.blob("nope")
    with pytest.raises(SerializationError, match="list of integers"):
        p.int_list("job")


def test_error_payload_keeps_rhode_messages_only():
    e = error_payload(SerializationError("refresh request is corrupted (digest mismatch)"))
    assert e.error == "refresh request is corrupted (digest mismatch)"
    assert e.config["rhode-error-kind"] == "SerializationError"
    e = error_payload(ValueError("secret internals 0x1234"))
    assert "0x1234" not in e.error and e.config["rhode-error-kind"] == "InternalError"
    assert Payload({ERROR_KEY: 3}).error is None


def test_run_and_node_configuration_errors_name_the_key():
    dc = DeployConfig.from_run_config(RC)
    assert dc.n_parties == 3 and dc.run.hidden == 4 and dc.params.name == "test"
    assert dc.fingerprint() == DeployConfig.from_run_config({**RC, "global-iterations": 9,
                                                             "round-timeout": 60.0}).fingerprint()
    assert dc.fingerprint() != DeployConfig.from_run_config({**RC, "hidden": 5}).fingerprint()
    for bad, match in (({"n-parties": 1}, "n-parties"), ({"mode": "serve"}, "mode"),
                       ({"hidden": "four"}, "hidden"), ({"round-timeout": -1.0}, "round-timeout"),
                       ({"resume": "yes"}, "resume"), ({"preset": "huge"}, "preset")):
        with pytest.raises(ParameterError, match=match):
            DeployConfig.from_run_config({**RC, **bad}).params  # noqa: B018 - preset validated lazily
    with pytest.raises(ParameterError, match="n-parties"):
        DeployConfig.from_run_config({"server-dir": "x"})
    n = NodeConfig.from_node_config({"party-index": 1, "data": "a.csv", "storage": "/tmp/x"})
    assert n.party_index == 1 and str(n.storage) == "/tmp/x"
    with pytest.raises(ParameterError, match="party-index"):
        NodeConfig.from_node_config({"storage": "/tmp/x"})
    with pytest.raises(ParameterError, match="storage"):
        NodeConfig.from_node_config({"party-index": 0})
    assert config_arg({"a": 1, "b": "x y", "c": True, "d": 0.5}) == 'a=1 b="x y" c=true d=0.5'


def _setup_answers(corrupt_lead: bool):
    def holder(index):
        def handle(step, p):
            assert step == Step.SETUP
            out = Payload({"party": index, "columns": ["load", "temp"], "target": "load",
                           "features": ["load", "temp"], "count": 30.0, "exps": [4, 5]})
            if index == 0:
                out.blobs["pk_share"] = b"RHDE" + bytes(200) if corrupt_lead else b""
            return out
        return handle
    return {i: holder(i) for i in range(3)}


def _aggregator(dc: DeployConfig, transport) -> Aggregator:
    return Aggregator(dc.run, dc.fingerprint(), transport, round_timeout=dc.round_timeout)


def test_aggregator_rejects_a_corrupted_answer_and_names_the_holder(tmp_path):
    dc = DeployConfig.from_run_config({**RC, "server-dir": str(tmp_path / "server")})
    # the bytes of a byte transport: every holder's answer crosses as a bundle
    wire = {i: (lambda step, p, h=h: unpack_bundle(pack_bundle(h(step, p))))
            for i, h in _setup_answers(corrupt_lead=True).items()}
    agg = _aggregator(dc, LocalTransport(wire))
    with pytest.raises(ProtocolError, match="data holder 0 sent an unusable public-key answer"):
        agg.keygen(MheContext(dc.params))
    # a holder that answers with another party index is refused too
    handlers = _setup_answers(corrupt_lead=False)
    handlers[2] = handlers[1]
    agg = _aggregator(dc, LocalTransport(handlers))
    with pytest.raises(ProtocolError, match="data holder 2 answered 'query.setup' as party 1"):
        agg.keygen(MheContext(dc.params))


def test_missing_holder_is_named(tmp_path):
    dc = DeployConfig.from_run_config({**RC, "server-dir": str(tmp_path / "server")})
    t = LocalTransport({0: lambda s, p: Payload({"party": 0}), 1: lambda s, p: Payload({"party": 1})})
    with pytest.raises(ProtocolError, match="data holder\\(s\\) 2 did not answer 'query.refresh'"):
        t.exchange(Step.REFRESH, {0: Payload(), 1: Payload(), 2: Payload()}, dc.round_timeout)
    t = LocalTransport({0: lambda s, p: error_payload(SerializationError("bad bytes")),
                        1: lambda s, p: Payload({"party": 1})})
    with pytest.raises(ProtocolError, match="data holder 0 rejected 'query.pcks': SerializationError: bad"):
        t.exchange(Step.KEY_SWITCH, {0: Payload(), 1: Payload()}, 5.0)


def test_holder_service_answers_errors_and_keeps_serving(tmp_path):
    store = NodeStore(tmp_path / "node")
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    node = {"party-index": 0, "storage": str(store.root)}
    try:
        ans = relay.forward(Step.DECRYPT.value, Payload(), RC, node, os.getpid())
        assert ans.error is not None and "no public context" in ans.error
        pid = store.worker_pid()
        assert pid is not None and stat.S_IMODE(os.stat(store.socket_path).st_mode) == 0o600
        ans = relay.forward("query.nonsense", Payload(), RC, node, os.getpid())
        assert ans.error is not None and "unknown step" in ans.error
        ans = relay.forward(Step.DECRYPT.value, Payload(), {}, node, os.getpid())
        assert ans.error is not None and "n-parties" in ans.error
        assert store.worker_pid() == pid  # the same service answered all three
    finally:
        store.kill_worker()
    assert store.worker_pid() is None


def test_generated_certificates_chain_to_the_ca(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding

    paths = make_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert stat.S_IMODE(os.stat(paths["key"]).st_mode) == 0o600
    assert issubclass(SerializationError, RhodeError)
