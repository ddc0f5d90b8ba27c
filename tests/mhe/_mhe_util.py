"""Helpers shared by the mhe tests."""

from __future__ import annotations

ROTATIONS = (1, -1, 4)


def at_last_usable_level(col, ct):
    """Spend levels on ``ct`` (products by 1.0) until it has used exactly ``usable_levels``."""
    cc = col.context.cc
    for _ in range(col.context.params.usable_levels):
        ct = cc.EvalMult(ct, 1.0)
    assert col.context.levels_used(ct) == col.context.params.usable_levels
    return ct
