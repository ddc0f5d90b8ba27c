"""A whole run: keys, encrypted global statistics, encrypted FedAvg training with checkpoints, the
plaintext mirror and exact baselines, encrypted prediction for a querier, report and plots.

This is what ``rhode demo`` and ``rhode train`` execute, with every party in this process (the
in-process engine). Directory layout of ``--out``::

    run.json            configuration, fingerprint, CKKS parameters, revealed global statistics
    keys/               public context and joint evaluation keys (no secret)
    parties/party-i.key each data holder's secret share (mode 0600; in a deployment, on its own machine)
    checkpoint.rhode    encrypted global model + run state after the last completed global iteration
    report.json, loss.png, predictions.png, predictions.csv
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rhode.data import Normalizer, Stats, load_csv, make_windows
from rhode.errors import CheckpointError, DataError
from rhode.federated.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint, write_checkpoint
from rhode.federated.config import RunConfig
from rhode.federated.dataprep import (
    encrypted_global_stats,
    load_holders,
    querier_windows,
    window_holders,
)
from rhode.federated.engine import EncryptedSession
from rhode.federated.parallel import ParallelTrainer
from rhode.federated.report import peak_rss_mb, plot_loss, plot_predictions, write_json
from rhode.mhe import preset
from rhode.nn.config import ModelConfig, TrainConfig
from rhode.nn.fedavg import fedavg
from rhode.nn.model import RecurrentModel
from rhode.nn.train import batch_indices, local_training
from rhode.tensor import NumpyBackend

RUN_JSON = "run.json"


def model_configs(cfg: RunConfig, n_features: int) -> tuple[ModelConfig, ModelConfig, TrainConfig]:
    """(polynomial model = mirror/encrypted, exact model = baseline, training config)."""
    # tanh: degree 7 on [-2.5, 2.5] costs the same 3 levels as degree 5 in the power-basis
    # evaluation and trains within ~1 % of exact tanh on the bundled and CSV data (degree 5 on
    # [-3, 3]: up to 26 % off after the demo's few steps); see docs/accuracy.md
    act = {"tanh_interval": cfg.tanh_interval, "tanh_degree": cfg.tanh_degree}
    poly = ModelConfig(cfg.cell, n_features, cfg.hidden, 1, activation="poly", **act).validate()
    exact = ModelConfig(cfg.cell, n_features, cfg.hidden, 1, activation="exact", **act).validate()
    train = TrainConfig(cfg.learning_rate, cfg.batch, cfg.local_steps, clip=cfg.clip,
                        clip_value=cfg.clip_value, clip_bound=2.0 * cfg.clip_value).validate()
    return poly, exact, train


def _fingerprint(cfg: RunConfig) -> str:
    return f"{cfg.fingerprint()}-{cfg.preset}"


def _eval_batches(holders, cfg: RunConfig, iteration: int) -> list[np.ndarray]:
    """Per holder, the windows its training loss is measured on after ``iteration`` (one batch)."""
    return [batch_indices(h.X.shape[0], cfg.batch, seed=cfg.seed + 7919, party=h.index,
                          iteration=iteration, step=0) for h in holders]


def _plain_loss(model: RecurrentModel, params: dict, holders, idx: list[np.ndarray]) -> float:
    be = NumpyBackend()
    total, count = 0.0, 0
    for h, ix in zip(holders, idx):
        xs = [h.X[ix, t, :] for t in range(h.X.shape[1])]
        yhat = model.predict(be, params, xs)
        total += float(np.sum((yhat - h.Y[ix]) ** 2))
        count += len(ix)
    return total / (2 * count)


def predict_plain(model: RecurrentModel, params: dict, X: np.ndarray) -> np.ndarray:
    be = NumpyBackend()
    return np.asarray(model.predict(be, params, [X[:, t, :] for t in range(X.shape[1])]))


def run_training(cfg: RunConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) an encrypted federated training and prediction; return the report."""
    t_start = time.perf_counter()
    cfg.validate()
    params_ckks = preset(cfg.preset)
    out = Path(out)
    fp = _fingerprint(cfg)
    run_meta: dict[str, Any] | None = None
    if resume:
        run_meta = _read_run_json(out)
        if run_meta["fingerprint"] != fp:
            raise CheckpointError(
                f"the run in {out} was made with other parameters ({_diff(run_meta['config'], cfg)}); "
                "resume with the same options, or start a new run in another --out")
    elif (out / CHECKPOINT_NAME).exists() or (out / RUN_JSON).exists():
        raise CheckpointError(f"{out} already holds a run; continue it with --resume or choose another --out")

    holders = load_holders(cfg)  # data errors surface before any key is made
    n = len(holders)
    n_features = holders[0].train.n_features
    poly_cfg, exact_cfg, train_cfg = model_configs(cfg, n_features)
    model = RecurrentModel(poly_cfg)
    exact_model = RecurrentModel(exact_cfg)
    bar = _Progress(progress)

    # 1. keys (or the stored ones on resume)
    t0 = time.perf_counter()
    if resume:
        session = bar.run("loading keys", lambda: EncryptedSession.load(out, model, cfg.batch))
    else:
        out.mkdir(parents=True, exist_ok=True)
        session = bar.run(f"collective key generation ({n} parties, {params_ckks.name} preset)",
                          lambda: EncryptedSession.create(params_ckks, n, model, cfg.batch))
    t_keys = time.perf_counter() - t0

    # 2. global normalization statistics under encryption (stored once revealed)
    if run_meta is not None:
        total = _stats_from_json(run_meta["global_stats"])
    else:
        total = encrypted_global_stats([h.train for h in holders], session.secure_sum)
        run_meta = {"config": cfg.to_dict(), "fingerprint": fp, "ckks": params_ckks.to_dict(),
                    "global_stats": _stats_to_json(total), "model": poly_cfg.__dict__,
                    "train": train_cfg.__dict__}
        session.save(out)
        write_json(out / RUN_JSON, run_meta)
    norm = Normalizer.from_stats(total)
    window_holders(holders, norm, cfg)
    weights = [float(h.X.shape[0]) for h in holders]
    parties = [(h.X, h.Y) for h in holders]

    # 3. plaintext mirror (same polynomials) and exact baseline: same seed, batches, weights
    t0 = time.perf_counter()
    mirror_params = plain_fedavg(model, train_cfg, parties, cfg, weights)
    t_mirror = time.perf_counter() - t0
    exact_params = plain_fedavg(exact_model, train_cfg, parties, cfg, weights)

    # 4. encrypted training
    start = 0
    history: list[dict] = []
    if resume and (out / CHECKPOINT_NAME).exists():
        ckpt = read_checkpoint(out)
        if ckpt.fingerprint != fp:
            raise CheckpointError(f"checkpoint in {out} was made with other parameters; use another --out")
        enc = session.import_model(ckpt.model)
        start, history = ckpt.iteration, list(ckpt.state.get("history", []))
    else:
        enc = session.encrypt_model(model.init_params(cfg.seed))
    iter_times = [h["seconds"] for h in history]
    workers = n_workers(cfg.workers, n)
    parallel = workers > 1 and start < cfg.global_iterations
    with (bar.run(f"starting {workers} training workers", lambda: ParallelTrainer(session, workers))
          if parallel else contextlib.nullcontext()) as trainer:
        for it in range(start, cfg.global_iterations):
            rec = _global_iteration(session, trainer, enc, holders, parties, weights, train_cfg, cfg, it, bar,
                                    model, exact_model, mirror_params, exact_params)
            enc = rec.pop("model")
            history.append(rec)
            iter_times.append(rec["seconds"])
            write_checkpoint(out, Checkpoint(it + 1, fp, session.export_model(enc), {"history": history}))
            bar.note(f"iteration {it + 1}: encrypted loss {rec['loss_encrypted']:.5f} "
                     f"(mirror {rec['loss_mirror']:.5f}), {rec['seconds']:.1f} s; checkpoint written")

    # 5. a querier's encrypted prediction on the held-out windows
    Xq, Yq = querier_windows(holders, cfg.max_test_windows)
    t0 = time.perf_counter()
    yq = bar.run(f"encrypted prediction for the querier ({len(Xq)} windows)",
                 lambda: session.predict(enc, Xq))
    t_predict = time.perf_counter() - t0
    y_mirror = predict_plain(model, mirror_params[-1], Xq)
    y_exact = predict_plain(exact_model, exact_params[-1], Xq)
    naive = Xq[:, -1, holders[0].train.target_index][:, None] if holders[0].train.target_is_feature else None

    # 6. by unanimous decision of the data holders: reveal the final model (to compare with the mirror)
    final = session.decrypt_model(enc)
    diff = max(float(np.max(np.abs(final[k] - mirror_params[-1][k]))) for k in final)

    scale = norm.target_scale
    def mae(y):  # noqa: E306
        return float(np.mean(np.abs(y - Yq)))
    def rmse(y):  # noqa: E306
        return float(np.sqrt(np.mean((y - Yq) ** 2)))
    report = {
        "model": cfg.cell, "parties": n, "global_iterations": cfg.global_iterations,
        "preset": params_ckks.name, "ring_dim": params_ckks.ring_dim,
        "data": list(cfg.data) or cfg.dataset, "target": holders[0].train.target_name,
        "features": list(holders[0].train.feature_names),
        "time_column": holders[0].train.time_column,
        "test_windows": int(len(Xq)),
        "test_mae_encrypted": mae(yq), "test_mae_mirror": mae(y_mirror), "test_mae_plaintext": mae(y_exact),
        "test_mae_naive": mae(naive) if naive is not None else None,
        "test_rmse_encrypted": rmse(yq), "test_rmse_mirror": rmse(y_mirror),
        "test_rmse_plaintext": rmse(y_exact),
        "test_mae_encrypted_original_units": mae(yq) * scale,
        "test_mae_plaintext_original_units": mae(y_exact) * scale,
        "max_abs_prediction_diff_vs_mirror": float(np.max(np.abs(yq - y_mirror))),
        "max_abs_weight_diff_vs_mirror": diff,
        "seconds_total": time.perf_counter() - t_start,
        "seconds_key_generation": t_keys,
        "seconds_per_global_iteration": float(np.mean(iter_times)) if iter_times else None,
        "seconds_prediction": t_predict,
        "seconds_mirror_training": t_mirror,
        "bytes_sent_per_party": session.bytes_per_party(),
        "refreshes": session.refresh_counts(),
        "operations": session.operation_counts(),
        "workers": workers,
        "peak_rss_mb": peak_rss_mb(workers),
        "history": history,
        "resumed_from_iteration": start if resume else None,
        "config": cfg.to_dict(),
    }
    write_json(out / "report.json", report)
    _write_predictions(out / "predictions.csv", Yq, yq, y_mirror, y_exact, norm)
    title = f"{cfg.cell.upper()}, {n} data holders, {params_ckks.name} preset"
    plot_loss(out / "loss.png", {"encrypted": [h["loss_encrypted"] for h in history],
                                 "mirror": [h["loss_mirror"] for h in history],
                                 "plaintext (exact)": [h["loss_exact"] for h in history]}, title)
    plot_predictions(out / "predictions.png", norm.denormalize_target(Yq)[:, 0],
                     {"encrypted": norm.denormalize_target(yq)[:, 0],
                      "plaintext (exact)": norm.denormalize_target(y_exact)[:, 0]},
                     f"{title}: test windows", holders[0].train.target_name)
    report["out"] = str(out)
    return report


def n_workers(requested: int, n_parties: int) -> int:
    """Training worker processes: ``requested``, at most one per data holder; 0 = one per data holder,
    at most two per CPU core this process may use (with more workers than cores, a worker waiting for
    a refresh leaves its core to another: docs/benchmarks/scaling.md, "Parallel engine"; and no worker
    trains two holders while another idles); 1 means the sequential in-process engine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or 2 * cores, n_parties))


def _global_iteration(session, trainer, enc, holders, parties, weights, train_cfg, cfg, it, bar,
                      model, exact_model, mirror_params, exact_params) -> dict:
    """One global iteration: local training of every holder (sequential, or in the ``trainer``'s
    worker processes), FedAvg, encrypted loss. Returns its history record with the new ``model``."""
    t_it = time.perf_counter()
    split = session.reset_timers()
    sent_before = session.bytes_per_party()
    n = len(holders)
    desc = f"global iteration {it + 1}/{cfg.global_iterations}"
    with bar.bar(total=n * cfg.local_steps, desc=desc) as steps:
        if trainer is None:
            locals_ = [session.local_training(enc, h.X, h.Y, train_cfg, seed=cfg.seed, party=h.index,
                                              iteration=it, on_step=lambda _s, b=steps: b.update(1))
                       for h in holders]
        else:
            locals_ = trainer.local_training(enc, parties, train_cfg, seed=cfg.seed, iteration=it,
                                             on_done=lambda _p, b=steps: b.update(cfg.local_steps))
        enc = session.aggregate(locals_, weights)
        idx = _eval_batches(holders, cfg, it)
        loss = session.encrypted_loss(enc, [(h.X[ix], h.Y[ix]) for h, ix in zip(holders, idx)])
    return {"iteration": it + 1, "loss_encrypted": loss,
            "loss_mirror": _plain_loss(model, mirror_params[it + 1], holders, idx),
            "loss_exact": _plain_loss(exact_model, exact_params[it + 1], holders, idx),
            "seconds": time.perf_counter() - t_it, **split.summary(),
            "bytes_per_party": session.bytes_per_party() - sent_before, "model": enc}


def plain_fedavg(model: RecurrentModel, train_cfg: TrainConfig, parties, cfg: RunConfig,
                  weights) -> list[dict]:
    """Plaintext FedAvg with the encrypted run's seed, batches and weights; the global model after
    each iteration (element 0: the initial model)."""
    be = NumpyBackend()
    out = [model.init_params(cfg.seed)]
    for it in range(cfg.global_iterations):
        local = [local_training(be, model, dict(out[-1]), X, Y, train_cfg, seed=cfg.seed, party=i,
                                iteration=it) for i, (X, Y) in enumerate(parties)]
        out.append(fedavg(be, local, weights))
    return out


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    mb = report["bytes_sent_per_party"] / 2 ** 20
    lines = [
        f"rhode: {report['model'].upper()} trained by {report['parties']} data holders under multiparty "
        f"CKKS ({report['preset']} preset, ring 2^{int(np.log2(report['ring_dim']))}), "
        f"{report['global_iterations']} global iterations",
        f"  test MAE (normalized): encrypted {report['test_mae_encrypted']:.4f} | mirror "
        f"{report['test_mae_mirror']:.4f} | plaintext {report['test_mae_plaintext']:.4f}"
        + (f" | naive {report['test_mae_naive']:.4f}" if report.get("test_mae_naive") is not None else ""),
        f"  encrypted vs mirror: max weight diff {report['max_abs_weight_diff_vs_mirror']:.2e}, "
        f"max prediction diff {report['max_abs_prediction_diff_vs_mirror']:.2e}",
        f"  time {report['seconds_total']:.0f} s ({report['seconds_per_global_iteration'] or 0:.1f} s per "
        f"global iteration), traffic {mb:.0f} MiB per party, {report['refreshes']['rounds']} refresh "
        f"rounds, peak memory {report['peak_rss_mb']:.0f} MiB",
        f"  report, plots and checkpoint in {report['out']}",
    ]
    return "\n".join(lines)


def _write_predictions(path, Y, y_enc, y_mirror, y_exact, norm) -> None:
    cols = [norm.denormalize_target(a)[:, 0] for a in (Y, y_enc, y_mirror, y_exact)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["truth", "encrypted", "mirror", "plaintext"])
        for row in zip(*cols):
            w.writerow([f"{v:.6g}" for v in row])


def _stats_to_json(s: Stats) -> dict:
    return {"columns": list(s.columns), "target": s.target, "count": s.count,
            "sum": s.sum.tolist(), "sumsq": s.sumsq.tolist()}


def _stats_from_json(d: dict) -> Stats:
    return Stats(tuple(d["columns"]), d["target"], float(d["count"]), np.asarray(d["sum"]),
                 np.asarray(d["sumsq"]))


def _read_run_json(out: Path) -> dict:
    try:
        return json.loads((out / RUN_JSON).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no run to resume in {out} (no {RUN_JSON}); start without --resume") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{out / RUN_JSON} is unreadable or corrupted: {exc}") from None


def _diff(stored: dict, cfg: RunConfig) -> str:
    now = cfg.to_dict()
    keys = [k for k in now if k not in ("global_iterations", "max_test_windows", "extra")
            and stored.get(k) != now[k]]
    return ", ".join(f"{k}: {stored.get(k)!r} then, {now[k]!r} now" for k in keys) or "CKKS preset"


def run_prediction(model_dir: Path, data: Path, out: Path) -> dict:
    """A querier's CSV against the trained encrypted model in ``model_dir``."""
    meta = _read_run_json(model_dir)
    cfg = RunConfig.from_dict(meta["config"])
    ckpt = read_checkpoint(model_dir)
    total = _stats_from_json(meta["global_stats"])
    norm = Normalizer.from_stats(total)
    features = total.columns if total.target in total.columns else None
    series = load_csv(data, total.target, list(features) if features else None)
    if tuple(series.stat_columns) != tuple(total.columns):
        raise DataError(f"{data} has columns {list(series.stat_columns)}; the model was trained on "
                        f"{list(total.columns)}")
    X, Y = make_windows(norm.normalize(series), cfg.timesteps, cfg.horizon)
    poly_cfg, _, _ = model_configs(cfg, series.n_features)
    model = RecurrentModel(poly_cfg)
    session = EncryptedSession.load(model_dir, model, cfg.batch)
    enc = session.import_model(ckpt.model)
    yq = session.predict(enc, X)
    out.mkdir(parents=True, exist_ok=True)
    pred = norm.denormalize_target(yq)[:, 0]
    truth = norm.denormalize_target(Y)[:, 0]
    path = out / "predictions.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["window", "prediction", "truth"])
        for i, (p, t) in enumerate(zip(pred, truth)):
            w.writerow([i, f"{p:.6g}", f"{t:.6g}"])
    plot_predictions(out / "predictions.png", truth, {"encrypted prediction": pred},
                     f"{cfg.cell.upper()} predictions for {data.name}", total.target)
    report = {"windows": int(len(X)), "predictions_csv": str(path),
              "test_mae": float(np.mean(np.abs(pred - truth))),
              "bytes_sent_per_party": session.bytes_per_party()}
    write_json(out / "report.json", report)
    return report


class _Progress:
    """tqdm bars (or nothing with --quiet)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, unit="step")

    def run(self, desc: str, fn):
        with tqdm(total=1, desc=desc, disable=not self.enabled, leave=False) as b:
            result = fn()
            b.update(1)
        self.note(f"{desc}: done")
        return result

    def note(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)
