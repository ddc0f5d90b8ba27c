"""Parameter presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from rhode.errors import ParameterError
from rhode.mhe import PRESETS, CkksParams, LocalCollective, check_party_count, make_context, preset


def test_presets_validate_and_name_levels():
    for name in ("test", "default", "deep"):
        p = preset(name)
        assert p.name == name
        assert p.usable_levels == p.depth - 2 >= 3
        assert p.reveal_precision_bits >= 12  # values revealed with flooding keep >= 12 bits
    assert not PRESETS["test"].secure and PRESETS["default"].secure and PRESETS["deep"].secure


def test_unknown_preset_is_rejected():
    with pytest.raises(ParameterError, match="unknown parameter preset"):
        preset("fast")


@pytest.mark.parametrize("change, msg", [
    ({"ring_dim": 3000}, "power of two"),
    ({"depth": 2}, "depth"),
    ({"scale_bits": 60}, "scale_bits"),
    ({"first_mod_bits": 40}, "first_mod_bits"),
    ({"scale_bits": 40, "first_mod_bits": 50}, "flooding"),
    ({"depth": 9}, "not 128-bit secure"),
    ({"noise_bits": -1.0}, "noise_bits"),
])
def test_invalid_parameters_are_rejected(change, msg):
    with pytest.raises(ParameterError, match=msg):
        dataclasses.replace(PRESETS["default"], **change).validate()


def test_secure_context_built_by_openfhe_for_default():
    cc = make_context(preset("default"))
    assert cc.GetRingDimension() == 1 << 14


def test_from_dict_round_trip_and_errors():
    p = preset("deep")
    assert CkksParams.from_dict(p.to_dict()) == p
    with pytest.raises(ParameterError, match="malformed"):
        CkksParams.from_dict({"name": "x"})


@pytest.mark.parametrize("n", [0, 1, 17, 2.5, True, "3"])
def test_party_count_is_validated(n, params):
    with pytest.raises(ParameterError, match="number of parties"):
        check_party_count(n)
    with pytest.raises(ParameterError):
        LocalCollective(params, n)


def test_party_count_bounds_accepted():
    assert check_party_count(2) == 2 and check_party_count(16) == 16
