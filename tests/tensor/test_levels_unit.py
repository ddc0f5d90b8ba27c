"""Level management on fake ciphertexts (no crypto): which slots a refresh round takes, that it is
one round, that every slot holding a ciphertext is overwritten, and the eager margin."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from rhode.errors import ParameterError
from rhode.mhe.evaluator import COUNTERS
from rhode.tensor.cipher_tensor import CipherBatch, CipherParam
from rhode.tensor.counters import OpCounters
from rhode.tensor.levels import LevelManager, LevelNeed, RefreshItem, Slot, needs, slots_of

USABLE = 4


class FakeCt:
    def __init__(self, level: int, name: str = "") -> None:
        self.level, self.name = level, name

    def __repr__(self) -> str:
        return f"FakeCt({self.name}@{self.level})"


class FakeEv:
    usable_levels = USABLE
    params = SimpleNamespace(name="fake")

    def __init__(self) -> None:
        self.counts = Counter(dict.fromkeys(COUNTERS, 0))

    def level(self, ct) -> int:
        return ct.level

    def reset_counts(self) -> None:
        self.counts = Counter(dict.fromkeys(COUNTERS, 0))


def manager(margin=None, hook=None):
    ev = FakeEv()
    rounds: list[list] = []

    def refresh(cts):
        rounds.append(list(cts))
        return [FakeCt(0, "fresh-" + c.name) for c in cts]

    counters = OpCounters(ev)
    return LevelManager(ev, hook or refresh, counters, margin), rounds, counters


def test_needs_and_slots_are_named_records():
    a, b = FakeCt(1, "a"), FakeCt(2, "b")
    t = CipherBatch((3, 2), 0, {"R": [a, b]})
    reqs = needs(t, t.parts["R"], 2)
    assert [type(r) for r in reqs] == [LevelNeed, LevelNeed]
    assert [(r.slot.key, r.cost, r.slot.ct) for r in reqs] == [(0, 2, a), (1, 2, b)]
    p = CipherParam((2, 2), 1, forms={"nat": a, "T": b})
    assert [r.slot.key for r in needs(p, p.forms, 1, ["T"])] == ["T"]
    assert [s.key for s in slots_of(p)] == ["nat", "T"]
    assert len(slots_of(t)) == 2              # parts["R"] and full["R"] are one list: counted once


def test_only_due_ciphertexts_refreshed_in_one_round():
    lm, rounds, counters = manager()
    a, b, c = FakeCt(3, "a"), FakeCt(1, "b"), FakeCt(4, "c")
    t = CipherBatch((3, 2), 0, {"R": [a, b]})
    u = CipherBatch((3, 2), 1, {"C": [c]})
    lm.ensure(needs(t, t.parts["R"], 1) + needs(u, u.parts["C"], 1))    # a: 3+1 ok, c: 4+1 due
    assert rounds == [[c]]
    assert u.parts["C"][0].name == "fresh-c" and t.parts["R"][0] is a
    lm.ensure(needs(t, t.parts["R"], 2))                                  # a: 3+2 due, b: 1+2 ok
    assert rounds[1] == [a]
    tot = counters.counters()["total"]
    assert (tot["refreshes"], tot["refreshed_ciphertexts"]) == (2, 2)


def test_refresh_overwrites_every_slot_holding_the_ciphertext():
    lm, rounds, _ = manager()
    x = FakeCt(4, "x")
    shared = [x]
    t = CipherBatch((2, 2), 0, {"R": shared})
    t.powers["R"] = [{2: "x^2"}]
    v = CipherBatch((2, 2), 1, {"C": [x]})                 # same ciphertext in another tensor's list
    p = CipherParam((2, 2), 2, forms={"nat": x})
    lm.ensure(needs(t, shared, 1) + needs(v, v.parts["C"], 1) + needs(p, p.forms, 1))
    assert rounds == [[x]]                                 # one ciphertext, refreshed once
    new = t.parts["R"][0]
    assert new.level == 0 and v.parts["C"][0] is new and p.forms["nat"] is new and t.full["R"][0] is new
    assert t.powers == {}                                  # cached powers of the old ciphertext dropped


def test_eager_margin_takes_recent_nearly_spent_tensors():
    for margin, expect in ((None, 1), (1, 2), (0, 1)):
        lm, rounds, _ = manager(margin)
        due = CipherBatch((2, 2), 0, {"R": [FakeCt(4, "due")]})
        near = CipherBatch((2, 2), 1, {"R": [FakeCt(3, "near")]})
        far = CipherBatch((2, 2), 2, {"R": [FakeCt(1, "far")]})
        for t in (due, near, far):
            lm.track(t)
        lm.ensure(needs(due, due.parts["R"], 1))
        assert len(rounds[0]) == expect, margin
        assert near.parts["R"][0].level == (0 if expect == 2 else 3)
        assert far.parts["R"][0].level == 1


def test_no_round_when_nothing_is_due_and_explicit_refresh():
    lm, rounds, _ = manager(margin=2)
    t = CipherParam((2,), 0, forms={"nat": FakeCt(2)}, pending={})
    lm.ensure(needs(t, t.forms, 2))
    assert rounds == []
    fresh = CipherParam((2,), 1, forms={"nat": FakeCt(0)})
    lm.refresh_now([t, fresh])                 # level-0 ciphertexts are left alone
    assert len(rounds) == 1 and len(rounds[0]) == 1 and lm.level(t) == 0


def test_errors():
    lm, _, _ = manager()
    t = CipherBatch((2, 2), 0, {"R": [FakeCt(0)]})
    with pytest.raises(ParameterError, match="needs 5 levels"):
        lm.ensure(needs(t, t.parts["R"], USABLE + 1))
    bad, _, _ = manager(hook=lambda cts: [])
    t = CipherBatch((2, 2), 0, {"R": [FakeCt(USABLE)]})
    with pytest.raises(ParameterError, match="different number"):
        bad.ensure(needs(t, t.parts["R"], 1))


def test_slot_and_item_records():
    x, y = FakeCt(1), FakeCt(0)
    p = CipherParam((2,), 0, forms={"T": x})
    s = Slot(p, p.forms, "T")
    assert s.ct is x
    s.replace(y)
    assert p.forms["T"] is y
    item = RefreshItem(x)
    assert item.slots == [] and RefreshItem(x).slots is not item.slots
