"""Serialization: round trips, validation of untrusted bytes, secret-share files, shares computed in
another OS process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _mhe_util import at_last_usable_level

from rhode import mhe as M
from rhode.errors import SerializationError
from rhode.mhe import Party, Querier
from rhode.mhe import serial as S
from rhode.mhe.protocols import (
    ProtocolKind,
    decryption,
    fold,
    key_switch,
    public_key,
    refresh,
    relin,
    rotation,
)

HERE = Path(__file__).parent
TOL = 1e-5


def _err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _fuse(ctx, shares, length=None):
    """Threshold decryption of every party's :class:`decryption.DecryptionShare`."""
    return decryption.finalize(ctx, fold(ctx, decryption.aggregate, shares, ProtocolKind.DECRYPTION), length)


def test_frame_rejects_wrong_kind_params_and_damage(col3, params):
    ct = col3.encrypt([0.5])
    data = S.ciphertexts_to_bytes(col3.context, [ct])
    with pytest.raises(SerializationError, match="expected a decryption_shares"):
        S.ciphertexts_from_bytes(col3.context, data, S.Kind.DECRYPTION_SHARES)
    with pytest.raises(SerializationError, match="other CKKS parameters"):
        S.unframe(S.Kind.CIPHERTEXTS, replace(params, noise_bits=21.0), data)
    with pytest.raises(SerializationError, match="truncated"):
        S.ciphertexts_from_bytes(col3.context, data[:-1])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    with pytest.raises(SerializationError, match="corrupted"):
        S.ciphertexts_from_bytes(col3.context, bytes(flipped))
    with pytest.raises(SerializationError, match="not rhode data"):
        S.ciphertexts_from_bytes(col3.context, b"garbage" * 10)
    with pytest.raises(SerializationError, match="expected bytes"):
        S.ciphertexts_from_bytes(col3.context, "text")


def test_ciphertext_round_trip_and_key_check(collectives, rng):
    col2, col3 = collectives[2], collectives[3]
    x = rng.uniform(-1, 1, 16)
    data = S.ciphertexts_to_bytes(col3.context, [col3.encrypt(x), col3.encrypt(-x)])
    back = S.ciphertexts_from_bytes(col3.context, data, count=2)
    assert _err(col3.decrypt(back, 16)[0], x) <= TOL and _err(col3.decrypt(back, 16)[1], -x) <= TOL
    with pytest.raises(SerializationError, match="expected 3 objects"):
        S.ciphertexts_from_bytes(col3.context, data, count=3)
    # same parameters, other joint key: the key tag check rejects it
    with pytest.raises(SerializationError, match="under another key"):
        S.ciphertexts_from_bytes(col2.context, data)


def test_ciphertext_of_another_crypto_context_is_rejected(col3, params, rng):
    """Ciphertexts are read without OpenFHE's CRT precomputation, which is safe only when they resolve
    to the loaded context: a ciphertext of other OpenFHE parameters (same ring) framed as ours is
    rejected before any operation touches it."""
    other = M.LocalCollective(replace(params, depth=params.depth - 1), 2)
    ct = other.encrypt(rng.uniform(-1, 1, 8))
    forged = S._pack(S.Kind.CIPHERTEXTS, params, [ct], {"levels": [ct.GetLevel()]})
    with pytest.raises(SerializationError, match="another CryptoContext"):
        S.ciphertexts_from_bytes(col3.context, forged)
    # reading it did not leave the precomputation off for the next context that is loaded
    back = S.context_from_bytes(S.context_to_bytes(col3.context))
    x = rng.uniform(-1, 1, 8)
    assert _err(col3.decrypt(S.ciphertexts_from_bytes(back, S.ciphertexts_to_bytes(
        col3.context, [col3.encrypt(x)])), 8)[0], x) <= TOL


def test_context_public_key_and_eval_keys_round_trip(col3, rng):
    ctx = col3.context
    back = S.context_from_bytes(S.context_to_bytes(ctx))
    assert back.params == ctx.params and back.key_tag == ctx.key_tag
    assert back.rotation_indices == ctx.rotation_indices
    pk = S.public_key_from_bytes(ctx, S.public_key_to_bytes(ctx, ctx.public_key), key_tag=ctx.key_tag)
    x = rng.uniform(-1, 1, 8)
    assert _err(col3.decrypt([ctx.encrypt(x, pk)], 8)[0], x) <= TOL
    keys = S.eval_keys_to_bytes(ctx)
    S.load_eval_keys(back, keys)
    assert back.has_relin_key and back.rotation_indices == ctx.rotation_indices
    with pytest.raises(SerializationError, match="expected a eval_keys"):
        S.load_eval_keys(back, S.context_to_bytes(ctx))


def test_key_generation_shares_round_trip(params, rng):
    """Run key generation with every share passing through the codecs of rhode.mhe.serial, as between
    processes."""
    ctx = M.MheContext(params)
    K = S.Kind
    lead = Party.create(ctx, 0)
    lead_pk = S.public_key_from_bytes(ctx, S.public_key_to_bytes(ctx, lead.public_key_share))
    crp = public_key.PublicKeyCrp(lead_pk)
    parties = [lead] + [Party.create(ctx, i, crp) for i in (1, 2)]
    pk_shares = [public_key.PublicKeyShare(S.public_key_from_bytes(
        ctx, S.public_key_to_bytes(ctx, p.public_key_share, K.PUBLIC_KEY_SHARE), K.PUBLIC_KEY_SHARE))
        for p in parties]
    public_key.finalize(ctx, fold(ctx, public_key.aggregate, pk_shares, ProtocolKind.PUBLIC_KEY))
    for p in parties:
        p.bind_to_joint_key()
    with pytest.raises(SerializationError, match="not a kind of key"):
        S.public_key_to_bytes(ctx, ctx.public_key, K.RELIN_SHARE_ROUND1)

    def wire(share, kind):
        return type(share)(S.key_from_bytes(ctx, S.key_to_bytes(ctx, share.key, kind), kind))

    r1_crp = wire(relin.gen_crp(parties[0]), K.RELIN_SHARE_ROUND1)
    r1 = [wire(relin.gen_round1(p, r1_crp), K.RELIN_SHARE_ROUND1) for p in parties]
    round1 = fold(ctx, relin.aggregate_round1, r1, ProtocolKind.RELIN_ROUND1)
    r2 = [wire(relin.gen_round2(p, round1), K.RELIN_SHARE_ROUND2) for p in parties]
    round2 = fold(ctx, relin.aggregate_round2, r2, ProtocolKind.RELIN_ROUND2)
    relin.finalize(ctx, wire(round2, K.RELIN_SHARE_ROUND2))

    rots = [3, -2]

    def wire_map(share):
        data = S.rotation_keys_to_bytes(ctx, share.keys, rots)
        keys, got = S.rotation_keys_from_bytes(ctx, data, rotations=rots)
        return type(share)(keys, rotation.as_rotation_tuple(got))

    rcrp = wire_map(rotation.gen_crp(parties[0], rots))
    shares = [wire_map(rotation.gen_share(p, rcrp)) for p in parties]
    rotation.finalize(ctx, fold(ctx, rotation.aggregate, shares, ProtocolKind.ROTATION))
    with pytest.raises(SerializationError, match="other rotations"):
        S.rotation_keys_from_bytes(ctx, S.rotation_keys_to_bytes(ctx, rcrp.keys, rots), rotations=[3])

    def wire_cts(share, **kw):
        data = S.ciphertexts_to_bytes(ctx, share.cts, share.KIND)
        return type(share)(tuple(S.ciphertexts_from_bytes(ctx, data, share.KIND, **kw)))

    x, y = rng.uniform(-1, 1, ctx.slots), rng.uniform(-1, 1, ctx.slots)
    ct = ctx.cc.EvalRotate(ctx.cc.EvalMult(ctx.encrypt(x), ctx.encrypt(y)), -2)
    dec = [wire_cts(decryption.gen_share(p, [ct])) for p in parties]
    assert _err(_fuse(ctx, dec)[0], np.roll(x * y, 2)) <= TOL

    q = Querier(ctx)
    qpk = S.public_key_from_bytes(ctx, S.public_key_to_bytes(ctx, q.public_key, K.QUERIER_PUBLIC_KEY),
                                  K.QUERIER_PUBLIC_KEY)
    ks = [wire_cts(key_switch.gen_share(p, [ct], qpk), key_tag=q.public_key.GetKeyTag()) for p in parties]
    switched = key_switch.finalize(ctx, fold(ctx, key_switch.aggregate, ks, ProtocolKind.KEY_SWITCH))
    assert _err(q.decrypt(switched)[0], np.roll(x * y, 2)) <= TOL


def test_secret_share_file_is_private_and_loads(col3, tmp_path, rng):
    path = tmp_path / "party1.key"
    col3.parties[1].save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = Party.load(col3.context, path)
    assert loaded.index == 1
    ct = col3.encrypt(rng.uniform(-1, 1, 4))
    shares = [decryption.gen_share(p, [ct]) for p in (col3.parties[0], loaded, col3.parties[2])]
    assert _fuse(col3.context, shares, 4)[0].shape == (4,)
    # an existing world-readable file is tightened when overwritten
    path.chmod(0o644)
    col3.parties[1].save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(SerializationError, match="cannot read"):
        Party.load(col3.context, tmp_path / "missing.key")


def test_secret_share_rejected_for_other_joint_key(collectives, tmp_path):
    path = tmp_path / "p.key"
    collectives[2].parties[0].save(path)
    with pytest.raises(SerializationError, match="another joint key"):
        Party.load(collectives[3].context, path)


def test_shares_computed_in_another_process_fuse(col3, tmp_path, rng):
    ctx = col3.context
    x = rng.uniform(-1, 1, ctx.slots)
    ct = ctx.cc.EvalMult(col3.encrypt(x), 1.0)
    low = at_last_usable_level(col3, col3.encrypt(x))
    req = refresh.prepare(ctx, [low])
    (tmp_path / "context.bin").write_bytes(S.context_to_bytes(ctx))
    col3.parties[2].save(tmp_path / "party.key")
    (tmp_path / "cts.bin").write_bytes(S.ciphertexts_to_bytes(ctx, [ct]))
    (tmp_path / "refresh.bin").write_bytes(req.to_bytes(ctx))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(HERE / "_share_child.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    remote = decryption.DecryptionShare.from_bytes(ctx, (tmp_path / "dec.bin").read_bytes(), count=1)
    shares = [decryption.gen_share(p, [ct]) for p in col3.parties[:2]] + [remote]
    assert _err(_fuse(ctx, shares)[0], x) <= TOL
    remote_pairs = refresh.RefreshShare.from_bytes(ctx, (tmp_path / "refresh_share.bin").read_bytes(), 1)
    local = [refresh.gen_share(p, req) for p in col3.parties[:2]]
    agg = fold(ctx, refresh.aggregate, local + [remote_pairs], ProtocolKind.REFRESH)
    out = refresh.finalize(ctx, req, agg)
    assert out[0].GetLevel() == 0
    assert _err(col3.decrypt(out)[0], x) <= TOL


def test_collective_reassembled_from_bytes_and_share_files(col3, tmp_path, rng):
    from rhode.errors import ProtocolError
    from rhode.mhe import LocalCollective

    ctx = S.context_from_bytes(S.context_to_bytes(col3.context))
    with pytest.raises(ProtocolError, match="relinearization key"):
        LocalCollective.from_parts(ctx, [])
    S.load_eval_keys(ctx, S.eval_keys_to_bytes(col3.context))
    for p in col3.parties:
        p.save(tmp_path / f"p{p.index}.key")
    parties = [Party.load(ctx, tmp_path / f"p{i}.key") for i in (2, 0, 1)]
    with pytest.raises(ProtocolError, match="parties 0..N-1"):
        LocalCollective.from_parts(ctx, parties[:1] + parties[2:])
    col = LocalCollective.from_parts(ctx, parties)
    x = rng.uniform(-1, 1, ctx.slots)
    ct = ctx.cc.EvalRotate(ctx.cc.EvalMult(col.encrypt(x), col.encrypt(x)), 1)
    assert _err(col.decrypt([ct])[0], np.roll(x * x, -1)) <= TOL
    assert _err(col3.decrypt(col.refresh([ct]))[0], np.roll(x * x, -1)) <= TOL
