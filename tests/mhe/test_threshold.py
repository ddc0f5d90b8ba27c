"""Threshold decryption, refresh, rotations and key switching on real ciphertexts (`test` preset)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _mhe_util import ROTATIONS, at_last_usable_level

from rhode.errors import DataError, ProtocolError
from rhode.mhe import Querier
from rhode.mhe.protocols import ProtocolKind, decryption, fold

TOL = 1e-5  # abs error for values in [-1, 1] after flooded decryption
FAIL = 1e-1  # fusing fewer than N shares must be at least this far off


def _err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _partial_error(col, ct, idx, ref):
    try:
        return _err(col.decrypt_partial([ct], idx)[0], ref)
    except ProtocolError:  # OpenFHE refuses to decode: does not recover either
        return np.inf


@pytest.mark.parametrize("n", [2, 3, 5])
def test_threshold_decryption_needs_all_parties(collectives, rng, n):
    col = collectives[n]
    x = rng.uniform(-1, 1, col.context.slots)
    ct = col.encrypt(x)
    assert _err(col.decrypt([ct])[0], x) <= TOL
    for idx in itertools.combinations(range(n), n - 1):
        assert _partial_error(col, ct, idx, x) >= FAIL, f"parties {idx} recovered the message"


@pytest.mark.parametrize("n", [2, 3, 5])
def test_refresh_batch_of_eight_at_last_usable_level(collectives, rng, n):
    col = collectives[n]
    ctx = col.context
    xs = [rng.uniform(-1, 1, ctx.slots) for _ in range(8)]
    low = [at_last_usable_level(col, col.encrypt(x)) for x in xs]
    rounds = col.stats["refresh_rounds"]
    out = col.refresh(low)
    assert col.stats["refresh_rounds"] == rounds + 1
    assert [c.GetLevel() for c in out] == [0] * 8
    for got, x in zip(col.decrypt(out), xs, strict=True):
        assert _err(got, x) <= TOL
    prod = ctx.cc.EvalMult(out[0], out[1])
    assert _err(col.decrypt([prod])[0], xs[0] * xs[1]) <= TOL
    # and the refreshed ciphertext can again spend all usable levels and be refreshed
    again = col.refresh([at_last_usable_level(col, out[2])])[0]
    assert _err(col.decrypt([again])[0], xs[2]) <= TOL


def test_refresh_refuses_ciphertext_past_usable_levels(col3, rng):
    ct = at_last_usable_level(col3, col3.encrypt(rng.uniform(-1, 1, 8)))
    ct = col3.context.cc.EvalMult(ct, 1.0)  # one level too many: refresh would return garbage
    with pytest.raises(ProtocolError, match="refresh needs 3"):
        col3.refresh([ct])


@pytest.mark.parametrize("n", [2, 3, 5])
def test_key_switch_to_querier(collectives, rng, n):
    col = collectives[n]
    x = rng.uniform(-1, 1, col.context.slots)
    ct = col.encrypt(x)
    ct = col.context.cc.EvalMult(ct, 1.0)  # a computed result, not only a fresh one
    querier = Querier(col.context)
    switched = col.key_switch([ct], querier.public_key)
    assert _err(querier.decrypt(switched)[0], x) <= TOL
    # the data holders together cannot decrypt what was switched to the querier
    assert _err(col.decrypt(switched)[0], x) >= FAIL
    other = Querier(col.context)
    with pytest.raises(ProtocolError, match="not under this querier's key"):
        other.decrypt(switched)


def test_rotations_including_negative(col3, rng):
    x = rng.uniform(-1, 1, col3.context.slots)
    ct = col3.encrypt(x)
    for r in ROTATIONS:
        got = col3.decrypt([col3.context.cc.EvalRotate(ct, r)])[0]
        assert _err(got, np.roll(x, -r)) <= TOL


def test_add_rotation_keys_generates_only_missing(params, rng):
    from rhode.mhe import LocalCollective

    col = LocalCollective(params, 2, rotations=[2])
    cc, tag = col.context.cc, col.context.key_tag
    before = col.stats["bytes_per_party"]
    col.add_rotation_keys([2])  # nothing missing: no round
    assert col.stats["bytes_per_party"] == before
    col.add_rotation_keys([2, -3, 2 + col.context.slots])
    assert col.context.rotation_indices == {2, -3}
    assert set(cc.GetExistingEvalAutomorphismKeyIndices(tag)) == set(cc.FindAutomorphismIndices([2, -3]))
    x = rng.uniform(-1, 1, col.context.slots)
    assert _err(col.decrypt([cc.EvalRotate(col.encrypt(x), -3)])[0], np.roll(x, 3)) <= TOL
    # the lead's partial rotation keys are not left behind in OpenFHE's static map
    assert all(not t.startswith("rhode-lead-") for t in cc.GetAllEvalAutomorphismKeys())
    with pytest.raises(DataError, match="integers"):
        col.add_rotation_keys([1.5])


def test_keys_held_once_per_process(collectives):
    """Every collective keeps exactly one relinearization key and one rotation-key map, under its
    joint tag, however many parties it has."""
    cc = collectives[5].context.cc
    rot_tags = set(cc.GetAllEvalAutomorphismKeys())
    mult_tags = set(cc.GetAllEvalMultKeys())
    for col in collectives.values():
        tag = col.context.key_tag
        assert tag in rot_tags and tag in mult_tags
        assert len(cc.GetEvalMultKeyVector(tag)) == 1
        assert all(p._secret.GetKeyTag() == tag for p in col.parties)
    own = {c.context.key_tag for c in collectives.values()}
    leftovers = {t for t in rot_tags | mult_tags if t.startswith("rhode-lead-")}
    assert not leftovers and own <= rot_tags


def test_encrypt_rejects_bad_values(col3):
    with pytest.raises(DataError):
        col3.encrypt(np.zeros(col3.context.slots + 1))
    with pytest.raises(DataError):
        col3.encrypt(np.array([np.nan]))


def test_share_counts_must_match(col3, rng):
    ct = col3.encrypt(rng.uniform(-1, 1, 4))
    a = decryption.gen_share(col3.parties[0], [ct, ct])
    b = decryption.gen_share(col3.parties[1], [ct])
    with pytest.raises(ProtocolError, match="one decryption share per ciphertext"):
        fold(col3.context, decryption.aggregate, [a, b], ProtocolKind.DECRYPTION)


def test_secret_never_in_repr_or_pickle(col3):
    import pickle

    p = col3.parties[1]
    assert "secret" not in repr(p).lower() and "PrivateKey" not in repr(p)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(p)
    with pytest.raises(TypeError):
        pickle.dumps(Querier(col3.context))


def test_stats_count_rounds_and_bytes(col3, rng):
    # a refresh first: its (compressed) shares must not stand in for the size of a decryption share
    col3.refresh([col3.encrypt(rng.uniform(-1, 1, 4))])
    before = dict(col3.stats)
    col3.decrypt([col3.encrypt(rng.uniform(-1, 1, 4))])
    assert col3.stats["decryption_rounds"] == before["decryption_rounds"] + 1
    # one flooded decryption share of a fresh ciphertext: 1 element x 11 towers x 2^13 x 8 bytes
    sent = col3.stats["bytes_per_party"] - before["bytes_per_party"]
    assert 11 * 8192 * 8 <= sent <= 11 * 8192 * 8 + 4096
