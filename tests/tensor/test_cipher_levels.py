"""Level management: refresh before an operation would run out of levels, batched, counted."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL

from rhode.errors import ParameterError
from rhode.tensor.poly import ChebyshevPoly


def test_chain_of_50_multiplications(backend, reveal, evaluator):
    be = backend
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 1.0, (20, 5)) * rng.choice([-1, 1], (20, 5))
    z = rng.uniform(0.97, 1.03, (20, 5))
    y, ze = be.encrypt_batch(a, "R"), be.encrypt_batch(z, "R")
    be.reset_counters()
    ref = a.copy()
    for _ in range(50):
        y = be.mul(y, ze)
        ref = ref * z
        assert be.level(y) <= be.usable
    totals = be.counters()["total"]
    # y gains one level per product; it is refreshed whenever it reaches usable_levels
    assert totals["refreshes"] == (50 - 1) // be.usable == 6
    assert totals["ct_ct_mults"] == 50 * 2          # two chunks of 16 samples
    print(f"50 dependent products: {totals['refreshes']} refreshes "
          f"({totals['refreshed_ciphertexts']} ciphertexts), usable levels {be.usable}")
    np.testing.assert_allclose(reveal(be, y), ref, atol=TOL, rtol=0)


def test_refresh_is_batched_over_operands(backend):
    be = backend
    p = ChebyshevPoly.fit(np.tanh, -4, 4, 7)                   # 3 levels
    a = be.encrypt_batch(np.full((40, 3), 0.5), "C")          # 3 chunks
    for _ in range(2):
        a = be.poly(a, p)                                      # level 6
    b = be.poly(be.poly(be.encrypt_batch(np.full((40, 3), 0.2), "C"), p), p)
    a, b = be.mul(be.mul(a, a), a), be.mul(be.mul(b, b), b)  # level 8 = usable
    assert be.level(a) == be.level(b) == be.usable
    be.reset_counters()
    be.add(a, b)                                              # 0 levels: no refresh
    assert be.counters()["total"]["refreshes"] == 0
    be.mul(a, b)                                              # both due: ONE round, 6 ciphertexts
    t = be.counters()["total"]
    assert (t["refreshes"], t["refreshed_ciphertexts"]) == (1, 6)


def test_explicit_refresh_and_counters_reset(backend):
    be = backend
    w = be.scale(be.param(np.ones((2, 3))), 0.5)
    assert be.level(w) == 1
    be.refresh([w])
    assert be.level(w) == 0
    c = be.counters()
    assert c["total"]["refreshes"] >= 1 and "refresh" in c["by_op"] and "scale" in c["by_op"]
    be.reset_counters()
    assert all(v == 0 for v in be.counters()["total"].values())


def test_operation_deeper_than_a_refresh_cycle_is_refused(backend):
    be = backend
    deep = ChebyshevPoly(-1.0, 1.0, tuple([0.0] * 300 + [1.0]))   # far beyond usable levels
    with pytest.raises(ParameterError):
        be.poly(be.encrypt_batch(np.zeros((1, 1)), "R"), deep)


@pytest.mark.parametrize("margin", [None, 2])
def test_eager_refresh_joins_nearly_spent_tensors(collective, evaluator, margin):
    from conftest import PACKED

    from rhode.tensor.cipher import CipherBackend

    be = CipherBackend(evaluator, PACKED, collective.refresh, eager_margin=margin)
    p = ChebyshevPoly.fit(np.tanh, -4, 4, 7)                   # 3 levels
    a = be.poly(be.poly(be.encrypt_batch(np.full((3, 2), 0.3), "R"), p), p)   # level 6
    c = be.poly(be.poly(be.encrypt_batch(np.full((3, 2), 0.1), "R"), p), p)   # level 6, alive
    be.reset_counters()
    be.poly(a, p)                                              # a is due; c would be due next
    t = be.counters()["total"]
    assert t["refreshes"] == 1
    assert t["refreshed_ciphertexts"] == (1 if margin is None else 2)
    assert be.level(c) == (6 if margin is None else 0)
