"""Layout policy: the Layout/Form enums and the rules (pure, no crypto)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rhode.packing import (
    CANONICAL_FORM,
    FORMS,
    LAYOUTS,
    Form,
    Layout,
    aligned_form,
    bias_form,
    contract_levels,
    decode_batch,
    encode_batch,
    input_layout,
    input_layouts,
    layout_of,
    plan,
    product_layout,
    weight_form,
)


def test_enums_behave_like_their_strings():
    assert Layout.R == "R" and Layout.C == "C" and Form.NAT == "nat" and Form.T == "T"
    assert Form.DIAG == "diag" and CANONICAL_FORM == "nat"
    assert {"R": 1}[Layout.R] == 1 and {Layout.C: 2}["C"] == 2      # dict keys mix freely
    assert str(Layout.R) == "R" and f"{Form.NAT}" == "nat"
    assert json.dumps([Layout.C, Form.T]) == '["C", "T"]'
    assert "+".join([Layout.R, Layout.C]) == "R+C"
    assert LAYOUTS == ("R", "C") and FORMS == ("nat", "T")
    assert Layout.R.other is Layout.C and Layout.C.other is Layout.R


def test_input_layout_alternates_from_c():
    assert [input_layout(t) for t in range(5)] == ["C", "R", "C", "R", "C"]
    assert input_layouts(4) == [Layout.C, Layout.R, Layout.C, Layout.R]
    assert input_layouts(0) == []
    assert all(isinstance(x, Layout) for x in input_layouts(3))
    with pytest.raises(ValueError):
        input_layout(-1)


def test_input_layout_matches_the_hidden_state_it_meets():
    """X_t must arrive in the layout H_{t-1} is produced in: H_0 = 0 (none), and each step's product
    takes its input in input_layout(t) and gives product_layout(input_layout(t))."""
    for t in range(1, 8):
        h_prev = product_layout(input_layout(t - 1))
        assert input_layout(t) == h_prev


def test_product_and_conversion_rules():
    assert product_layout("C") is Layout.R and product_layout(Layout.R) is Layout.C
    assert contract_levels("C") == 1 and contract_levels("R") == 2
    assert weight_form("C", transposed=False) is Form.NAT
    assert weight_form("R", transposed=False) is Form.T
    assert weight_form("R", transposed=True) is Form.NAT
    assert weight_form("C", transposed=True) is Form.T
    assert bias_form("C") is Form.NAT and bias_form("R") is Form.DIAG
    assert aligned_form("R") is Form.NAT and aligned_form("C") is Form.T
    assert layout_of("R") is Layout.R
    with pytest.raises(ValueError, match="unknown layout"):
        layout_of("X")
    with pytest.raises(ValueError):
        contract_levels("nat")


def test_encode_accepts_enum_and_string_layouts():
    p = plan(4, 8, 1024)
    V = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    for lay in ("R", "C"):
        a, b = encode_batch(p, V, lay), encode_batch(p, V, Layout(lay))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        np.testing.assert_array_equal(decode_batch(p, b, Layout(lay), 5, 3), V)
