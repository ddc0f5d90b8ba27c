"""The defaults of `rhode demo` and `rhode train` are the recipe bench/recipe.py chose (docs/recipe.json),
and they keep DESIGN.md's training recipe: differencing on, momentum on, the batch from the slots."""

from __future__ import annotations

import json
from pathlib import Path

from rhode.federated.config import RunConfig

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "recipe.json"


def test_defaults_are_the_studys_choice() -> None:
    chosen = json.loads(RECIPE.read_text())["chosen"]
    cfg = RunConfig()
    assert cfg.difference is chosen["difference"] is True
    assert cfg.momentum == chosen["momentum"] > 0 and not cfg.nesterov and cfg.lr_decay == 1.0
    assert cfg.learning_rate == chosen["learning_rate"]
    assert cfg.local_steps == chosen["local_steps"]
    assert cfg.batch == chosen["batch"] == 0  # auto
    assert cfg.global_iterations == chosen["G"]
    assert chosen["holds"] == chosen["runs"] and chosen["seconds"] <= 600
