"""The querier's path in a deployment: encrypt windows, have the federation evaluate them, decrypt.

The querier is neither a data holder nor the aggregator. From the aggregator's public directory it
needs only ``context.rhode`` (parameters, joint public key) and ``run.json`` (model configuration and
the revealed global normalization statistics). It makes its own key pair, encrypts its windows under
the joint key and writes a request file; a ``flwr run`` with ``mode='predict'`` makes the aggregator
evaluate the encrypted model on them and the data holders switch the result to the querier's key;
only the querier can decrypt the response file. Its secret key lives in this process only.

Command line (runs ``flwr run`` itself)::

    python -m rhode.federated.flower.querier --app deploy/flower --federation mylink \\
        --server-dir /srv/rhode --data query.csv --out predictions.csv --run-config run.toml
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from rhode.data import Normalizer, Windows, forecast_windows
from rhode.errors import ProtocolError, RhodeError
from rhode.federated import codec as K
from rhode.federated.config import RunConfig, model_configs
from rhode.federated.dataprep import query_series, stats_from_json
from rhode.federated.files import CONTEXT_FILE, RUN_JSON
from rhode.federated.payload import Payload, pack_bundle, unpack_bundle
from rhode.federated.schema import Field, input_blob
from rhode.mhe import Querier
from rhode.mhe import serial as S
from rhode.nn.model import RecurrentModel
from rhode.packing import Layout, decode_batch, encode_batch, input_layouts


class FlowerQuerier:
    """A querier of the federation whose aggregator directory is ``server_dir`` (public files only)."""

    def __init__(self, server_dir: str | os.PathLike) -> None:
        d = Path(server_dir)
        try:
            self.meta = json.loads((d / RUN_JSON).read_text())
            self.ctx = S.context_from_bytes((d / CONTEXT_FILE).read_bytes())
        except FileNotFoundError as exc:
            raise ProtocolError(
                f"{exc.filename} is missing: the federation has no trained model yet"
            ) from None
        self.run = RunConfig.from_dict(self.meta["config"])
        self.stats = stats_from_json(json.dumps(self.meta["global_stats"]))
        self.model = RecurrentModel(model_configs(self.run, int(self.meta["n_features"]))[0])
        self.plan = K.plan_for(self.model, self.run.batch, self.ctx.params)
        self._querier = Querier(self.ctx)
        self._shape: tuple[int, int] | None = None

    def forecast(self, csv_path: str | os.PathLike) -> Windows:
        """The querier's CSV as the model's windows (differenced as the run was) with the target's
        levels: ``W.X`` (n, T, d) goes into :meth:`request`, ``W.levels(y)`` turns the decrypted
        outputs (n, 1) into levels."""
        series = query_series(csv_path, self.stats, self.run)
        return forecast_windows(series, Normalizer.from_stats(self.stats), self.run.timesteps,
                                self.run.horizon)

    def windows(self, csv_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        """The querier's CSV as normalized model windows X (n, T, d) and model targets Y (n, 1)."""
        w = self.forecast(csv_path)
        return w.X, w.Y

    def request(self, X: np.ndarray) -> bytes:
        """The request file: X (n, T, d) encrypted under the joint key, timestep by timestep, and the
        querier's public key."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 3 or X.shape[2] != self.model.config.input_size or X.shape[1] != self.run.timesteps:
            raise ProtocolError(
                f"windows must have shape (n, {self.run.timesteps}, "
                f"{self.model.config.input_size}), got {X.shape}"
            )
        layouts = [str(lay) for lay in input_layouts(X.shape[1])]  # the aggregator accepts either layout
        blobs = {
            input_blob(t): S.ciphertexts_to_bytes(
                self.ctx, [self.ctx.encrypt(v) for v in encode_batch(self.plan, X[:, t, :], layouts[t])]
            )
            for t in range(X.shape[1])
        }
        blobs[Field.QUERIER_PK.value] = S.public_key_to_bytes(
            self.ctx, self._querier.public_key, S.Kind.QUERIER_PUBLIC_KEY
        )
        self._shape = (X.shape[0], X.shape[2])
        return pack_bundle(
            Payload({Field.SHAPE.value: list(self._shape), Field.LAYOUTS.value: layouts}, blobs)
        )

    def decrypt(self, response: bytes) -> np.ndarray:
        """The predictions (n, output_size) from the aggregator's response file."""
        r = unpack_bundle(response, "prediction response")
        layout = r.get(Field.LAYOUT.value, str)
        shape = r.int_list(Field.SHAPE.value)
        if len(shape) != 2 or layout not in [str(lay) for lay in Layout]:
            raise ProtocolError("the prediction response has a malformed shape or layout")
        if self._shape is not None and shape[0] != self._shape[0]:
            raise ProtocolError(f"the response is for {shape[0]} windows, the request had {self._shape[0]}")
        cts = S.ciphertexts_from_bytes(
            self.ctx, r.blob(Field.RESULT.value), key_tag=self._querier.public_key.GetKeyTag()
        )
        vectors = self._querier.decrypt(cts)
        return decode_batch(self.plan, vectors, layout, shape[0], shape[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rhode.federated.flower.querier",
        description="Ask a rhode Flower federation for encrypted predictions.",
    )
    ap.add_argument("--app", required=True, help="the Flower app directory (deploy/flower)")
    ap.add_argument("--federation", required=True, help="the SuperLink connection in FLWR_HOME/config.toml")
    ap.add_argument("--server-dir", required=True, help="the aggregator's directory (public files)")
    ap.add_argument("--data", required=True, help="the querier's CSV (same columns as the training data)")
    ap.add_argument("--out", required=True, help="where to write predictions.csv")
    ap.add_argument(
        "--run-config",
        action="append",
        default=[],
        help="the training run's --run-config values (key=value pairs or a TOML file)",
    )
    a = ap.parse_args(argv)
    try:
        q = FlowerQuerier(a.server_dir)
        w = q.forecast(a.data)
        with tempfile.TemporaryDirectory(prefix="rhode-query-") as tmp:
            req, resp = Path(tmp) / "request.bin", Path(tmp) / "response.bin"
            req.write_bytes(q.request(w.X))
            cmd = ["flwr", "run", a.app, a.federation, "--stream"]
            for rc in a.run_config:
                cmd += ["--run-config", rc]
            cmd += [
                "--run-config",
                f"mode='predict' server-dir='{a.server_dir}' query-in='{req}' query-out='{resp}'",
            ]
            proc = subprocess.run(cmd)
            if proc.returncode != 0 or not resp.exists():
                raise ProtocolError("the prediction run failed; see the output above")
            y = q.decrypt(resp.read_bytes())
    except RhodeError as exc:
        print(f"rhode: error: {exc}", file=sys.stderr)
        return 1
    pred, truth = w.map.original(w.levels(y))[:, 0], w.map.original(w.truth)[:, 0]  # levels, original units
    with open(a.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["window", "prediction", "truth"])
        for i, (p, t) in enumerate(zip(pred, truth)):
            w.writerow([i, f"{p:.6g}", f"{t:.6g}"])
    print(f"{len(pred)} predictions written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
