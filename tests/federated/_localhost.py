"""A whole Flower deployment on one machine: one SuperLink and one SuperNode per data holder.

For tests, benchmarks and trying rhode's Flower app before deploying it across machines. Every
process runs with telemetry and update checks off, ``FLWR_HOME`` inside ``root`` (nothing touches the
home directory), and its own process group, so :meth:`LocalFederation.stop` ends exactly what was
started (SuperLink, SuperNodes and the SuperExec/ClientApp/ServerApp processes they spawned), plus
the node-local training workers recorded in each node's storage directory.

With ``tls=True`` a throw-away certificate authority and a server certificate for ``127.0.0.1`` /
``localhost`` are generated under ``root/certs`` (:func:`make_certificates`); the SuperNodes and
``flwr run`` verify the SuperLink against that CA.

Example::

    with LocalFederation(root, [{"data": "a.csv"}, {"data": "b.csv"}], tls=True) as fed:
        fed.run(APP_DIR, {"global-iterations": 2, "server-dir": str(root / "server")})
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rhode.errors import ProtocolError
from rhode.federated.flower.store import NodeStore, stop_process

FEDERATION = "rhode-local"


def offline_env(flwr_home: str | os.PathLike, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for every Flower process: telemetry and update checks off, ``FLWR_HOME`` set, this
    interpreter's ``bin`` first on ``PATH`` (the SuperLink and SuperNodes spawn ``flower-superexec``,
    ``flwr-serverapp`` and ``flwr-clientapp`` by name), one OpenMP thread."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def make_certificates(directory: str | os.PathLike) -> dict[str, Path]:
    """A self-signed CA and a SuperLink server certificate for 127.0.0.1 / localhost (RSA 2048,
    valid one day). Returns the paths ``ca`` (give to SuperNodes and ``flwr``), ``cert`` and ``key``
    (the SuperLink's; the key file is written 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rhode test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    paths = {"ca": d / "ca.crt", "cert": d / "server.pem", "key": d / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return paths


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def config_arg(values: Mapping[str, object]) -> str:
    """``key=value`` pairs in the form ``--node-config`` and ``--run-config`` take (TOML values)."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in values.items())


@dataclass
class RunResult:
    """Outcome of one ``flwr run``: its exit status, output (stdout and stderr) and duration."""

    returncode: int
    output: str
    seconds: float


class LocalFederation:
    """A SuperLink and one SuperNode per data holder on 127.0.0.1.

    Args:
        root: a directory for everything this federation writes (FLWR_HOME, the SuperLink database,
            logs, certificates, and by default each node's storage directory ``root/node-i``).
        nodes: per data holder, its extra node config (e.g. ``{"data": "/path/a.csv"}``);
            ``party-index`` and ``storage`` are filled in unless given.
        tls: TLS between the SuperNodes / ``flwr`` and the SuperLink, with generated certificates.
    """

    def __init__(self, root: str | os.PathLike, nodes: Sequence[Mapping[str, object]],
                 tls: bool = False) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "flwr-home"
        self.home.mkdir(exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.tls = tls
        self.env = offline_env(self.home)
        self.node_configs: list[dict] = []
        for i, extra in enumerate(nodes):
            cfg = {"party-index": i, "storage": str(self.root / f"node-{i}")}
            cfg.update(extra)
            self.node_configs.append(cfg)
        self.fleet, self.appio, self.control, *self.node_ports = free_ports(3 + len(nodes))
        self.certs = make_certificates(self.root / "certs") if tls else None
        self.superlink: subprocess.Popen | None = None
        self.supernodes: list[subprocess.Popen | None] = [None] * len(nodes)
        self._write_flwr_config()

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Start the SuperLink, wait until its ports accept connections, then start every SuperNode."""
        cmd = ["flower-superlink", "--database", str(self.root / "superlink.db"),
               "--fleet-api-address", f"127.0.0.1:{self.fleet}",
               "--serverappio-api-address", f"127.0.0.1:{self.appio}",
               "--control-api-address", f"127.0.0.1:{self.control}"]
        if self.certs:
            cmd += ["--ssl-ca-certfile", str(self.certs["ca"]), "--ssl-certfile", str(self.certs["cert"]),
                    "--ssl-keyfile", str(self.certs["key"])]
        else:
            cmd += ["--insecure"]
        self.superlink = self._spawn(cmd, "superlink")
        self._wait_ports([self.fleet, self.appio, self.control], timeout, self.superlink, "SuperLink")
        for i in range(len(self.node_configs)):
            self.start_node(i)

    def start_node(self, i: int) -> None:
        """Start (or restart) the SuperNode of data holder ``i``."""
        if self.supernodes[i] is not None and self.supernodes[i].poll() is None:
            raise ProtocolError(f"the SuperNode of data holder {i} is already running")
        Path(self.node_configs[i]["storage"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = ["flower-supernode", "--superlink", f"127.0.0.1:{self.fleet}",
               "--clientappio-api-address", f"127.0.0.1:{self.node_ports[i]}",
               "--node-config", config_arg(self.node_configs[i])]
        cmd += ["--root-certificates", str(self.certs["ca"])] if self.certs else ["--insecure"]
        self.supernodes[i] = self._spawn(cmd, f"supernode-{i}")

    def kill_node(self, i: int) -> None:
        """Kill data holder ``i``'s SuperNode at once (SIGKILL to its process group), as a crash
        would, and the node-local training worker it started."""
        proc = self.supernodes[i]
        if proc is not None:
            _kill_group(proc, signal.SIGKILL)
            self.supernodes[i] = None
        NodeStore(self.node_configs[i]["storage"], create=False).kill_worker()

    def stop(self) -> None:
        """Stop every process this federation started (SuperNodes, SuperLink, their children, and
        the training workers recorded in the node storage directories)."""
        workers = [pid for cfg in self.node_configs
                   if (pid := NodeStore(cfg["storage"], create=False).worker_pid()) is not None]
        procs = [p for p in self.supernodes if p is not None] + ([self.superlink] if self.superlink else [])
        for p in procs:
            _kill_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            _kill_group(p, signal.SIGKILL)
        for cfg in self.node_configs:
            NodeStore(cfg["storage"], create=False).kill_worker()
        for pid in workers:  # a worker that exits by itself removes its pid file before it is gone
            stop_process(pid)
        self.supernodes = [None] * len(self.supernodes)
        self.superlink = None

    # -- runs -----------------------------------------------------------------------------------
    def run(self, app_dir: str | os.PathLike, run_config: Mapping[str, object] | None = None,
            timeout: float = 600.0) -> RunResult:
        """``flwr run APP_DIR rhode-local --stream``: submit a run and wait until it ends."""
        return self.wait(self.start_run(app_dir, run_config), timeout)

    def start_run(self, app_dir: str | os.PathLike,
                  run_config: Mapping[str, object] | None = None) -> subprocess.Popen:
        """Submit a run without waiting (``flwr run ... --stream`` in the background); pass the
        returned process to :meth:`wait`."""
        cmd = ["flwr", "run", str(app_dir), FEDERATION, "--stream"]
        if run_config:
            cmd += ["--run-config", config_arg(run_config)]
        n = len(list(self.logs.glob("flwr-run-*.log")))
        log = open(self.logs / f"flwr-run-{n}.log", "w+b")  # noqa: SIM115 - kept on the process
        proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        proc._rhode_log = log  # type: ignore[attr-defined]
        proc._rhode_t0 = time.monotonic()  # type: ignore[attr-defined]
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = 600.0) -> RunResult:
        """Wait for a run started by :meth:`start_run` (killed, and a ProtocolError, after ``timeout``)."""
        log = proc._rhode_log  # type: ignore[attr-defined]
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            log.seek(0)
            raise ProtocolError(f"flwr run did not finish within {timeout:.0f} s; output so far:\n"
                                f"{log.read().decode(errors='replace')[-4000:]}") from None
        finally:
            log.seek(0)
            out = log.read().decode(errors="replace")
            log.close()
        return RunResult(proc.returncode, out, time.monotonic() - proc._rhode_t0)  # type: ignore[attr-defined]

    def log(self, name: str) -> str:
        """The captured output of one process (``superlink``, ``supernode-0``, ...)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- helpers --------------------------------------------------------------------------------
    def _write_flwr_config(self) -> None:
        lines = ["[superlink]", f'default = "{FEDERATION}"', "", f"[superlink.{FEDERATION}]",
                 f'address = "127.0.0.1:{self.control}"']
        if self.certs:
            lines.append(f"root-certificates = {_toml_value(self.certs['ca'])}")
        else:
            lines.append("insecure = true")
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def _spawn(self, cmd: list[str], name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child's exit
        try:
            return subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def _wait_ports(self, ports: list[int], timeout: float, proc: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if proc.poll() is not None:
                raise ProtocolError(f"the {what} exited with status {proc.returncode}; see "
                                    f"{self.logs}:\n{self.log('superlink')[-2000:]}")
            if time.monotonic() > deadline:
                raise ProtocolError(f"the {what} did not open ports {pending} within {timeout:.0f} s")
            port = pending[0]
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pending.pop(0)
                    continue
            time.sleep(0.2)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group that ``proc`` leads (started with its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
