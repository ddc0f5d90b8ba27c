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


@pytest.mark.parametrize("name", ["test", "default"])
def test_rotation_key_size_estimate_follows_openfhe(name):
    """The estimate that sizes the key-generation rounds is within 10 % of a serialized rotation key
    (the deep preset's, 25.2 MB, is checked by bench/deployment.py's key-generation bytes)."""
    import openfhe as fhe

    p = preset(name)
    cc = make_context(p)
    sk = cc.KeyGen().secretKey
    cc.EvalAtIndexKeyGen(sk, [1, 2])
    size = len(fhe.SerializeEvalAutomorphismKeyString(fhe.BINARY, sk.GetKeyTag())) / 2
    assert abs(p.rotation_key_bytes - size) <= 0.1 * size


def test_rotation_chunks_keep_each_round_under_the_limit():
    from rhode.federated.keygen import ROTATION_ROUND_BYTES, rotation_chunks

    rots = list(range(-14, 15))  # 29 offsets, as the demo configuration needs
    assert rotation_chunks(rots, preset("default")) == [rots]  # 2^14: one round, as before
    deep = rotation_chunks(rots, preset("deep"))
    assert [len(c) for c in deep] == [10, 10, 9] and sum(deep, []) == rots
    assert max(map(len, deep)) * preset("deep").rotation_key_bytes <= ROTATION_ROUND_BYTES
    assert rotation_chunks(rots, preset("default"), limit=1) == [[r] for r in rots]
