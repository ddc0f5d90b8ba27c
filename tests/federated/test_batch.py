"""The default batch comes from the slot capacity (RunConfig.batch = 0 = auto, resolve_batch): one
ciphertext holds slots / H^2 samples, capped by the holders' fewest training windows; an explicit
batch is kept; the resolved batch is what the run's keys and fingerprint are made with."""

from __future__ import annotations

import pytest

import rhode.federated.run as run_module
from rhode.data import make_windows
from rhode.errors import ParameterError
from rhode.federated.config import RunConfig, model_configs, resolve_batch, run_fingerprint
from rhode.federated.dataprep import load_holders, with_batch
from rhode.mhe import preset


def _cfg(**over) -> RunConfig:
    return RunConfig(**{"dataset": "electricity", **over}).validate()


def test_default_is_auto() -> None:
    assert RunConfig().batch == 0
    with pytest.raises(ParameterError, match="batch 0 means auto"):
        model_configs(_cfg(), 1)
    with pytest.raises(ParameterError, match="--batch.*0: auto"):
        _cfg(batch=-1)


@pytest.mark.parametrize("d", [1, 2, 5, 8])
def test_h8_ring_2_14_is_128(d: int) -> None:
    slots = preset("default").slots
    assert slots == 2**13  # ring 2^14
    assert resolve_batch(_cfg(hidden=8), d, 10_000, slots) == 128


def test_wider_models_and_rings() -> None:
    assert resolve_batch(_cfg(hidden=8), 9, 10_000, 2**13) == 32      # H = 16
    assert resolve_batch(_cfg(hidden=4), 1, 10_000, 2**13) == 512     # H = 4
    assert resolve_batch(_cfg(hidden=1), 1, 10_000, 2**15) == 4096    # H = 2, capped at 4096
    with pytest.raises(ParameterError, match="larger preset"):
        resolve_batch(_cfg(hidden=64), 1, 10_000, 2**11)


def test_capped_by_windows_and_explicit_kept() -> None:
    assert resolve_batch(_cfg(hidden=8), 2, 57, 2**13) == 57
    assert resolve_batch(_cfg(hidden=8, batch=64), 2, 10_000, 2**13) == 64
    assert resolve_batch(_cfg(hidden=8, batch=64), 2, 10, 2**13) == 64  # the user's: not capped
    cfg = _cfg(max_rows=360, parties=3, partition="blocks", timesteps=3, difference=True)
    holders = load_holders(cfg)
    resolved = with_batch(cfg, holders, 2**13)
    fewest = min(len(make_windows(h.train, 3, 1)[1]) for h in holders)
    assert resolved.batch == fewest < 128
    assert with_batch(_cfg(batch=16), holders, 2**13).batch == 16


def test_run_training_keys_with_the_resolved_batch(monkeypatch, tmp_path) -> None:
    """run_training resolves the batch before the federation (its keys) and the fingerprint."""
    seen = []

    class StopError(Exception):
        pass

    def federation(cfg, *args, **kwargs):
        seen.append(cfg)
        raise StopError

    monkeypatch.setattr(run_module, "Federation", federation)
    with pytest.raises(StopError):
        run_module.run_training(_cfg(hidden=8, preset="default"), tmp_path / "run", progress=False)
    assert seen[0].batch == 128
    assert run_fingerprint(seen[0]) == run_fingerprint(_cfg(hidden=8, preset="default", batch=128))


def test_flower_needs_an_explicit_batch() -> None:
    """The Flower aggregator makes the keys before it sees the holders' windows: no auto batch there."""
    from rhode.federated.flower.settings import DeployConfig

    rc = {"n-parties": 3, "server-dir": "unused", "preset": "test", "hidden": 4, "target": "load"}
    with pytest.raises(ParameterError, match="'batch' is 0"):
        DeployConfig.from_run_config(rc)
    assert DeployConfig.from_run_config({**rc, "batch": 32}).run.batch == 32
