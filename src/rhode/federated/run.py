"""A whole in-process run: keys, encrypted global statistics, encrypted FedAvg training with checkpoints,
the plaintext mirror and exact baselines, encrypted prediction for a querier, report and plots.

This is what ``rhode demo`` and ``rhode train`` execute: the protocol of
:class:`~rhode.federated.aggregator.Aggregator` and :class:`~rhode.federated.holder.HolderSide`
carried by an in-process :class:`~rhode.federated.engine.Federation`; what this module adds is
policy: the mirror, checkpoints, the report. Directory layout of ``--out``
(:mod:`rhode.federated.files`)::

    run.json            configuration, fingerprint, CKKS parameters, revealed global statistics
    context.rhode       public context (joint public key); evalkeys.rhode: joint evaluation keys
    parties/party-i.key each data holder's secret share (in a deployment, on its own machine), and
    parties/party-i.digest  the sha256 of its data, which a resume checks
    checkpoint.rhode    encrypted global model + run state after the last completed global iteration
    report.json, loss.png, predictions.png, predictions.csv

A new run goes only into a new or empty directory (0700; every file 0600) and, if it stops before its
first checkpoint (an error, Ctrl-C), removes everything it wrote. Every check that needs no key is made
before the key generation.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rhode.data import Normalizer, forecast_windows
from rhode.errors import CheckpointError, DataError, ParameterError
from rhode.federated import budget as B
from rhode.federated import codec as K
from rhode.federated.baselines import accuracy
from rhode.federated.checkpoint import CHECKPOINT_NAME, Checkpoint, file_sha256, read_run, write_checkpoint
from rhode.federated.config import RunConfig, model_configs, run_fingerprint
from rhode.federated.dataprep import (
    check_holders,
    data_digest,
    load_holders,
    querier_windows,
    query_series,
    stats_from_json,
    stats_to_json,
    window_holders,
    with_batch,
)
from rhode.federated.engine import Federation, parties_dir
from rhode.federated.files import (
    PREDICT_MARKER,
    RUN_JSON,
    atomic_write,
    claim_predict_dir,
    claim_run_dir,
    digest_path,
    is_predict_dir,
    load_public_keys,
    read_data_digest,
    remove_predictions,
    remove_run,
    remove_stale_tmp,
    save_data_digest,
    save_public_keys,
)
from rhode.federated.mirror import plain_fedavg, plain_loss, predict_plain
from rhode.federated.report import check_divergence, peak_rss_mb, plot_loss, plot_predictions, write_json
from rhode.mhe import preset
from rhode.nn.model import RecurrentModel


@dataclass
class _Run:
    """What the steps of one run share."""

    cfg: RunConfig
    out: Path
    fp: str
    bar: Any
    holders: list = field(default_factory=list)
    meta: dict | None = None
    stats: Any = None
    history: list = field(default_factory=list)
    start: int = 0
    resumed: bool = False
    seconds: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)  # forecasts in levels, original units
    checkpoint: Checkpoint | None = None  # the one a resume continues from
    run_json_sha256: str = ""  # of run.json as written: every checkpoint records it
    budget: B.BudgetPlan | None = None  # what this configuration reveals (a resume checks what is left)


def run_training(cfg: RunConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) an encrypted federated training and prediction; return the report."""
    t_start = time.perf_counter()
    cfg.validate()
    holders = load_holders(cfg)  # data errors surface before any key is made
    slots = preset(cfg.preset).slots
    cfg = with_batch(cfg, holders, slots)  # batch 0 = auto; run.json records it
    check_holders(cfg, holders, slots)  # ... and so does every other check that needs no key
    r = _Run(cfg, Path(out), run_fingerprint(cfg), _Progress(progress), holders)
    r.budget = B.run_budget(cfg, holders[0].train.n_features, preset(cfg.preset))
    if not resume:
        B.budgeted(preset(cfg.preset), r.budget)  # a budget the preset cannot flood is refused now
    digests = [data_digest(cfg, h) for h in holders]
    if resume:
        r.meta, r.checkpoint = _check_resume(r, digests)
        r.resumed = True
        return _execute(r, t_start)
    top = claim_run_dir(r.out)
    try:
        for h, (source, sha) in zip(holders, digests):
            save_data_digest(r.out, h.index, source, sha)  # with the holder, beside its secret share
        return _execute(r, t_start)
    except BaseException:
        if not (r.out / CHECKPOINT_NAME).exists():  # stopped before its first checkpoint: nothing is kept
            remove_run(r.out, top)
        raise


def _execute(r: _Run, t_start: float) -> dict:
    """Keys, mirror, encrypted training, prediction, report and plots."""
    cfg = r.cfg
    workers = n_workers(cfg.workers, len(r.holders))
    with Federation(cfg, [h.train for h in r.holders], parties_dir(r.out), workers=workers) as fed:
        _keys(r, fed)
        window_holders(r.holders, Normalizer.from_stats(r.stats), cfg)
        parties = [(h.X, h.Y) for h in r.holders]
        poly_cfg, exact_cfg, train_cfg = model_configs(cfg, r.holders[0].train.n_features)
        t0 = time.perf_counter()
        weights = [float(X.shape[0]) for X, _ in parties]
        mirror = plain_fedavg(RecurrentModel(poly_cfg), train_cfg, parties, cfg, weights)
        r.seconds["mirror_training"] = time.perf_counter() - t0
        exact = plain_fedavg(RecurrentModel(exact_cfg), train_cfg, parties, cfg, weights)
        enc = _train(r, fed, parties, mirror, exact, RecurrentModel(exact_cfg))
        report = _evaluate(r, fed, enc, mirror, exact, RecurrentModel(exact_cfg))
    report.update(
        {
            "workers": workers,
            "peak_rss_mb": peak_rss_mb(workers),
            "seconds_total": time.perf_counter() - t_start,
            "resumed_from_iteration": r.start if r.resumed else None,
            # a resumed process counts only what it did itself: the iterations after this one
            "counted_since_iteration": r.start,
            "counted_in_this_process_only": list(_PROCESS_FIELDS),
        }
    )
    _write_outputs(r, report)
    report["out"] = str(r.out)
    return report


#: report fields that count only the process that wrote the report (a resumed one: since its checkpoint)
_PROCESS_FIELDS = ("bytes_sent_per_party", "refreshes", "operations", "seconds_total",
                   "seconds_key_generation", "seconds_loading_keys", "peak_rss_mb")


def _check_resume(r: _Run, digests: list[tuple[str, str]]) -> tuple[dict, Checkpoint | None]:
    """What a resume continues from: run.json and checkpoint that agree, made with these options
    (the number of global iterations aside, which may grow), from the same data (each holder's
    digest); CheckpointError, DataError or ParameterError otherwise."""
    meta, _, _, ckpt = read_run(r.out)
    remove_stale_tmp(r.out)  # of a killed earlier process
    stored = [read_data_digest(r.out, h.index) for h in r.holders]
    for h, (source, sha), was in zip(r.holders, digests, stored):
        if was is not None and was != sha:
            raise DataError(
                f"{source}: data holder {h.index}'s data changed since the run in {r.out} began (its sha256 "
                "differs from the one stored with that holder); resume with the data the run began with, "
                "or start a new run in another --out")
    if meta["fingerprint"] != r.fp:
        raise CheckpointError(
            f"the run in {r.out} was made with other parameters ({_diff(meta['config'], r.cfg)}); "
            "resume with the same options, or start a new run in another --out")
    for h, was in zip(r.holders, stored):
        if was is None:
            raise CheckpointError(f"{digest_path(r.out, h.index)} is missing: data holder {h.index}'s data "
                                  "cannot be checked; start a new run in another --out")
    done = ckpt.iteration if ckpt is not None else 0
    if r.cfg.global_iterations < done:
        raise ParameterError(
            f"invalid value for --iterations: {r.cfg.global_iterations}; the run in {r.out} has completed "
            f"{done} global iterations: resume with --iterations {done} (report only) or more")
    return meta, ckpt


def _keys(r: _Run, fed: Federation) -> None:
    """Collective key generation and the global statistics, or the stored ones on resume."""
    t0 = time.perf_counter()
    n_features = r.holders[0].train.n_features
    if r.meta is not None:
        ctx = r.bar.run("loading keys", lambda: load_public_keys(r.out))
        fed.attach(ctx, n_features)
        fed.agg.ledger = B.DecryptionLedger.load(r.out, ctx.params.decryption_budget)
        done = r.checkpoint.iteration if r.checkpoint is not None else 0
        b = r.budget
        fed.agg.ledger.check(r.cfg.global_iterations - done + b.model + b.prediction,
                             f"finishing this run (the losses of {r.cfg.global_iterations - done} more "
                             "iterations, the model and the test prediction)")
        r.stats = stats_from_json(json.dumps(r.meta["global_stats"]))
        r.run_json_sha256 = file_sha256(r.out / RUN_JSON)
        r.seconds["loading_keys"] = time.perf_counter() - t0
        return
    params = B.budgeted(preset(r.cfg.preset), r.budget)
    fed.agg.ledger = B.DecryptionLedger.create(r.out, params.decryption_budget)
    r.stats = r.bar.run(
        f"collective key generation ({len(r.holders)} parties, {r.cfg.preset} preset)",
        lambda: fed.keygen(params),
    )
    save_public_keys(r.out, fed.agg.ctx)
    poly_cfg, _, train_cfg = model_configs(r.cfg, n_features)
    r.meta = {
        "config": r.cfg.to_dict(),
        "fingerprint": r.fp,
        "ckks": params.to_dict(),
        "decryption_budget": r.budget.to_dict(),
        "global_stats": json.loads(stats_to_json(r.stats)),
        "n_features": n_features,
        "model": poly_cfg.__dict__,
        "train": train_cfg.__dict__,
    }
    r.run_json_sha256 = file_sha256(write_json(r.out / RUN_JSON, r.meta))  # 0600: revealed statistics
    r.seconds["key_generation"] = time.perf_counter() - t0


def _train(r: _Run, fed: Federation, parties, mirror, exact, exact_model) -> dict:
    """The encrypted global iterations from the checkpoint (or the initial model) on; a checkpoint
    after each. Returns the final encrypted model."""
    agg, cfg = fed.agg, r.cfg
    ckpt = r.checkpoint  # checked against run.json and these options (_check_resume)
    if ckpt is not None:
        enc = agg.restore(ckpt.model)  # the global model and (momentum) every holder's velocity
        r.start, r.history = ckpt.iteration, list(ckpt.state.get("history", []))
    else:
        enc = agg.encrypt_model(agg.model.init_params(cfg.seed))
    for it in range(r.start, cfg.global_iterations):
        enc, rec = _iteration(r, fed, it, enc)
        h = rec.to_dict()
        h.update(
            {
                "loss_encrypted": h.pop("loss"),
                "loss_mirror": plain_loss(agg.model, mirror[it + 1], parties, cfg, it),
                "loss_exact": plain_loss(exact_model, exact[it + 1], parties, cfg, it),
                "bytes_per_party": max(h["bytes_received_per_party"].values(), default=0),
            }
        )
        r.history.append(h)
        check_divergence(r.history, cfg.learning_rate)  # before a diverged model overwrites the checkpoint
        write_checkpoint(
            r.out,
            Checkpoint(
                it + 1,
                r.fp,
                agg.checkpoint_blobs(enc),  # with momentum also every holder's velocity, encrypted
                {"history": r.history, "run_json_sha256": r.run_json_sha256},
            ),
        )
        r.bar.note(
            f"iteration {it + 1}: encrypted loss {h['loss_encrypted']:.5f} (mirror {h['loss_mirror']:.5f}), "
            f"{h['seconds']:.1f} s; checkpoint written"
        )
    return enc


def _iteration(r: _Run, fed: Federation, it: int, enc: dict):
    """One global iteration with a progress bar of its protocol rounds (as many as the last one had)."""
    total = r.history[-1]["rounds"] if r.history else None
    with r.bar.bar(total=total, desc=f"global iteration {it + 1}/{r.cfg.global_iterations}") as b:

        def tick(rec) -> None:
            b.update(1)
            b.set_postfix_str(rec.step, refresh=False)

        fed.transport.on_round = tick
        try:
            return fed.agg.iteration(it, enc, r.stats)
        finally:
            fed.transport.on_round = None


def _evaluate(r: _Run, fed: Federation, enc: dict, mirror, exact, exact_model) -> dict:
    """The querier's encrypted prediction on the held-out windows; the final model revealed by
    unanimous decision (to compare with the mirror); the report (every MAE in levels, beside the
    baselines: :mod:`rhode.federated.baselines`)."""
    cfg, holders, agg = r.cfg, r.holders, fed.agg
    w = querier_windows(holders, cfg.max_test_windows)
    t0 = time.perf_counter()
    yq = r.bar.run(f"encrypted prediction for the querier ({len(w)} windows)", lambda: fed.predict(enc, w.X))
    r.seconds["prediction"] = time.perf_counter() - t0
    outputs = {"encrypted": yq, "mirror": predict_plain(agg.model, mirror[-1], w.X),
               "plaintext": predict_plain(exact_model, exact[-1], w.X)}
    parties = [(h.X, h.Y) for h in holders]
    acc, r.predictions = accuracy(w, outputs, parties, [h.train for h in holders], cfg.horizon)
    first = holders[0].train
    final = agg.decrypt_model(enc)
    diff = max(float(np.max(np.abs(final[k] - mirror[-1][k]))) for k in final)
    times = [h["seconds"] for h in r.history]
    ckks = agg.ctx.params
    return {
        "model": cfg.cell,
        "parties": len(holders),
        "global_iterations": cfg.global_iterations,
        "preset": ckks.name,
        "ring_dim": ckks.ring_dim,
        "data": list(cfg.data) or cfg.dataset,
        "target": first.level_name or first.target_name,
        "model_target": first.target_name,
        "features": list(first.feature_names),
        "time_column": first.time_column,
        "test_windows": len(w),
        **acc,
        "max_abs_weight_diff_vs_mirror": diff,
        "seconds_key_generation": r.seconds.get("key_generation"),  # None when resumed: keys were loaded
        "seconds_loading_keys": r.seconds.get("loading_keys"),
        "seconds_per_global_iteration": float(np.mean(times)) if times else None,
        "seconds_prediction": r.seconds["prediction"],
        "seconds_mirror_training": r.seconds["mirror_training"],
        "bytes_sent_per_party": fed.bytes_per_party(),
        "refreshes": fed.refresh_counts(),
        "operations": fed.operation_counts(),
        "history": r.history,
        "config": cfg.to_dict(),
        "decryptions": B.ledger_report(agg.ledger, ckks, len(holders), r.meta.get("decryption_budget")),
        "threshold": cfg.key_threshold, "dropouts": agg.dropouts,
    }


def _write_outputs(r: _Run, report: dict) -> None:
    """report.json, predictions.csv, loss.png and predictions.png (levels, original units)."""
    f = r.predictions
    write_json(r.out / "report.json", report)
    _write_predictions(r.out / "predictions.csv", f)
    title = f"{r.cfg.cell.upper()}, {len(r.holders)} data holders, {r.cfg.preset} preset"
    plot_loss(
        r.out / "loss.png",
        {
            "encrypted": [h["loss_encrypted"] for h in r.history],
            "mirror": [h["loss_mirror"] for h in r.history],
            "plaintext (exact)": [h["loss_exact"] for h in r.history],
        },
        title,
    )
    plot_predictions(
        r.out / "predictions.png",
        f["truth"],
        {"encrypted": f["encrypted"], "plaintext (exact)": f["plaintext"], "persistence": f["persistence"]},
        f"{title}: test windows",
        report["target"],
    )


def n_workers(requested: int, n_parties: int) -> int:
    """Training worker processes: ``requested``, at most one per data holder; 0 = one per data holder,
    at most two per CPU core this process may use (with more workers than cores, a worker waiting for
    a refresh leaves its core to another: docs/benchmarks/scaling.md, "Parallel engine"; and no worker
    trains two holders while another idles); 1 means the sequential in-process engine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or 2 * cores, n_parties))


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    mb = report["bytes_sent_per_party"] / 2**20
    lines = [
        f"rhode: {report['model'].upper()} trained by {report['parties']} data holders under multiparty "
        f"CKKS ({report['preset']} preset, ring 2^{int(np.log2(report['ring_dim']))}), "
        f"{report['global_iterations']} global iterations",
        "  test MAE (normalized): "
        + " | ".join(f"{label} {_fmt(report.get('test_mae_' + key))}" for label, key in _SUMMARY_MAES)
        + (f"; encrypted/persistence {report['test_mae_encrypted_vs_persistence']:.2f}"
           if report.get("test_mae_encrypted_vs_persistence") is not None else ""),
        f"  encrypted vs mirror: max weight diff {report['max_abs_weight_diff_vs_mirror']:.2e}, "
        f"max prediction diff {report['max_abs_prediction_diff_vs_mirror']:.2e}",
        f"  time {report['seconds_total']:.0f} s ({report['seconds_per_global_iteration'] or 0:.1f} s per "
        f"global iteration), traffic {mb:.0f} MiB per party, {report['refreshes']['rounds']} refresh "
        f"rounds, peak memory {report['peak_rss_mb']:.0f} MiB"
        + (f" (this process only: since iteration {report['counted_since_iteration']})"
           if report.get("resumed_from_iteration") is not None else ""),
        B.summary_line(report["decryptions"]),
        f"  report, plots and checkpoint in {report['out']}",
    ]
    return "\n".join(lines)


_SUMMARY_MAES = (("encrypted", "encrypted"), ("mirror", "mirror"), ("plaintext", "plaintext"),
                 ("persistence", "persistence"), ("linear AR", "linear_ar"))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_predictions(path: Path, forecasts: dict[str, np.ndarray]) -> None:
    """predictions.csv: one row per test window, the truth and every forecast, levels in original
    units."""
    cols = ["truth", "encrypted", "mirror", "plaintext", "persistence"]
    _write_csv(path, cols, ([f"{v:.6g}" for v in row] for row in zip(*(forecasts[c] for c in cols))))


def _write_csv(path: Path, header: list[str], rows) -> None:
    """A CSV file written atomically (0600: it holds decrypted values)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def _diff(stored: dict, cfg: RunConfig) -> str:
    now = cfg.to_dict()
    keys = [
        k
        for k in now
        if k not in ("global_iterations", "max_test_windows", "workers", "extra") and stored.get(k) != now[k]
    ]
    return ", ".join(f"{k}: {stored.get(k)!r} then, {now[k]!r} now" for k in keys) or "CKKS preset"


#: what predict says when --model holds no finished run
MODEL_HINT = "--model must be the --out directory of a rhode train or rhode demo run with a checkpoint"


def run_prediction(model_dir: Path, data: Path, out: Path) -> dict:
    """A querier's CSV against the trained encrypted model in ``model_dir``: predictions.csv (levels,
    original units), predictions.png and report.json (MAE in original units, beside persistence), with
    the marker predict.json, in ``out`` (0700, files 0600): never a training run's directory, never over
    files rhode predict did not write there; a failed prediction removes what it wrote."""
    model_dir, out = Path(model_dir), Path(out)
    _, cfg, total, ckpt = read_run(model_dir, need_checkpoint=True, hint=MODEL_HINT)
    series = query_series(data, total, cfg)
    w = forecast_windows(series, Normalizer.from_stats(total), cfg.timesteps, cfg.horizon)
    ctx = load_public_keys(model_dir)
    top = claim_predict_dir(out, model_dir)
    marked = is_predict_dir(out)
    try:
        write_json(out / PREDICT_MARKER, {"written_by": "rhode predict", "model": str(model_dir),
                                          "data": str(data)})
        return _predict(cfg, model_dir, ctx, ckpt, series, w, data, out)
    except BaseException:
        remove_predictions(out, top)
        if top is None and not marked:
            (out / PREDICT_MARKER).unlink(missing_ok=True)
        raise


def _predict(cfg: RunConfig, model_dir: Path, ctx, ckpt: Checkpoint, series, w, data: Path,
             out: Path) -> dict:
    """The encrypted prediction of :func:`run_prediction` and its files."""
    with Federation(cfg, [None] * cfg.n_parties, parties_dir(model_dir)) as fed:
        fed.attach(ctx, series.n_features)
        fed.agg.ledger = B.DecryptionLedger.load(model_dir, ctx.params.decryption_budget)
        enc = K.model_from_checkpoint(ctx, fed.agg.backend, fed.agg.model, ckpt.model)
        yq = fed.predict(enc, w.X)
        sent = fed.bytes_per_party()
        decryptions = B.ledger_report(fed.agg.ledger, ctx.params, cfg.n_parties)
    pred, truth = w.map.original(w.levels(yq))[:, 0], w.map.original(w.truth)[:, 0]
    last = w.map.original(w.last)[:, 0]
    path = out / "predictions.csv"
    _write_csv(path, ["window", "prediction", "truth"],
               ([i, f"{p:.6g}", f"{t:.6g}"] for i, (p, t) in enumerate(zip(pred, truth))))
    target = series.level_name or series.target_name
    title = f"{cfg.cell.upper()} predictions for {data.name}"
    plot_predictions(out / "predictions.png", truth, {"encrypted prediction": pred, "persistence": last},
                     title, target)
    report = {
        "windows": len(w),
        "predictions_csv": str(path),
        "test_mae": float(np.mean(np.abs(pred - truth))),
        "test_mae_persistence": float(np.mean(np.abs(last - truth))),
        "bytes_sent_per_party": sent,
        "decryptions": decryptions,
    }
    write_json(out / "report.json", report)
    return report


class _Progress:
    """tqdm bars (or nothing with --quiet)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int | None, desc: str):
        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, unit="round")

    def run(self, desc: str, fn):
        with tqdm(total=1, desc=desc, disable=not self.enabled, leave=False) as b:
            result = fn()
            b.update(1)
        self.note(f"{desc}: done")
        return result

    def note(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)
