"""The per-protocol modules: pairwise aggregation is order-independent and equals the former list
aggregation, inputs are never modified, every share type round-trips through bytes and rejects
corrupted bytes. Real OpenFHE ciphertexts (`test` preset), three parties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _mhe_util import at_last_usable_level

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe import MheContext, Party, Querier
from rhode.mhe.protocols import (
    Accumulator,
    ProtocolKind,
    decryption,
    fold,
    key_switch,
    public_key,
    refresh,
    relin,
    rotation,
)

TOL = 1e-5


def _err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _orders(ctx, agg, shares):
    """((a+b)+c), (a+(b+c)), ((c+a)+b), and a fold of every permutation."""
    a, b, c = shares
    out = [agg(ctx, agg(ctx, a, b), c), agg(ctx, a, agg(ctx, b, c)), agg(ctx, agg(ctx, c, a), b)]
    out += [fold(ctx, agg, list(p), ProtocolKind.DECRYPTION) for p in itertools.permutations(shares)]
    return out


def _wire(ctx, share, **kw):
    return type(share).from_bytes(ctx, share.to_bytes(ctx), **kw)


def _assert_same_bytes(ctx, results):
    """Byte-exact equality. Only for results computed in process: OpenFHE's byte form of an object
    also depends on whether its parts' ring parameters are one shared object (computed from the
    context) or several (read from bytes), not only on its values."""
    blobs = [r.to_bytes(ctx) for r in results]
    assert all(b == blobs[0] for b in blobs[1:]), "aggregation depends on the order"
    return blobs[0]


def _decrypt(parties, ct, n=None):
    ctx = parties[0].context
    agg = fold(ctx, decryption.aggregate, [decryption.gen_share(p, [ct], flood=False) for p in parties],
               ProtocolKind.DECRYPTION)
    return decryption.finalize(ctx, agg, n)[0]


def _new_parties(params, crp_through_bytes=False):
    ctx = MheContext(params)
    lead = Party.create(ctx, 0)
    crp = public_key.PublicKeyCrp.of(public_key.gen_share(lead))
    if crp_through_bytes:
        crp = _wire(ctx, crp)
        assert isinstance(crp, public_key.PublicKeyCrp)
    return ctx, [lead] + [Party.create(ctx, i, crp) for i in (1, 2)]


def test_keygen_aggregation_order_independent_and_equal_to_list_sum(params, rng):
    """Public key, relinearization (both rounds) and rotation keys: ((a+b)+c), (a+(b+c)), ((c+a)+b)
    and a fold of every permutation are the same key, byte for byte, and equal the former sequential
    list sum; no input is modified; the keys work."""
    ctx, parties = _new_parties(params)
    cc = ctx.cc
    pk = [public_key.gen_share(p) for p in parties]
    before = [s.to_bytes(ctx) for s in pk]
    joint = _orders(ctx, public_key.aggregate, pk)
    ref = pk[0].key
    for s in pk[1:]:
        ref = cc.MultiAddPubKeys(ref, s.key, joint[0].key.GetKeyTag())
    assert _assert_same_bytes(ctx, joint) == public_key.PublicKeyShare(ref).to_bytes(ctx)
    assert [s.to_bytes(ctx) for s in pk] == before
    public_key.finalize(ctx, joint[1])
    for p in parties:
        p.bind_to_joint_key()

    crp = relin.gen_crp(parties[0])
    r1 = [relin.gen_round1(p, crp) for p in parties]
    assert r1[0].to_bytes(ctx) == crp.to_bytes(ctx)  # the lead's round-1 share is the CRP
    before = [s.to_bytes(ctx) for s in r1]
    round1 = _orders(ctx, relin.aggregate_round1, r1)
    ref = r1[0].key
    for s in r1[1:]:
        ref = cc.MultiAddEvalKeys(ref, s.key, ctx.key_tag)
    assert _assert_same_bytes(ctx, round1) == relin.RelinRound1Share(ref).to_bytes(ctx)
    assert [s.to_bytes(ctx) for s in r1] == before
    r2 = [relin.gen_round2(p, round1[0]) for p in parties]
    before = [s.to_bytes(ctx) for s in r2]
    round2 = _orders(ctx, relin.aggregate_round2, r2)
    ref = r2[0].key
    for s in r2[1:]:
        ref = cc.MultiAddEvalMultKeys(ref, s.key, ctx.key_tag)
    assert _assert_same_bytes(ctx, round2) == relin.RelinRound2Share(ref).to_bytes(ctx)
    assert [s.to_bytes(ctx) for s in r2] == before
    relin.finalize(ctx, round2[2])

    rcrp = rotation.gen_crp(parties[0], [3, -2])
    shares = [rotation.gen_share(p, rcrp) for p in parties]
    before = [s.to_bytes(ctx) for s in shares]
    joint = _orders(ctx, rotation.aggregate, shares)
    ref = shares[0].keys
    for s in shares[1:]:
        ref = cc.MultiAddEvalAutomorphismKeys(ref, s.keys, ctx.key_tag)
    assert _assert_same_bytes(ctx, joint) == rotation.RotationShare(ref, (-2, 3)).to_bytes(ctx)
    assert [s.to_bytes(ctx) for s in shares] == before
    rotation.finalize(ctx, joint[4])
    assert ctx.rotation_indices == {3, -2}

    x, y = rng.uniform(-1, 1, ctx.slots), rng.uniform(-1, 1, ctx.slots)
    ct = cc.EvalRotate(cc.EvalMult(ctx.encrypt(x), ctx.encrypt(y)), 3)
    assert _err(_decrypt(parties, ct), np.roll(x * y, -3)) <= TOL


def test_keygen_with_every_share_through_bytes_in_any_order(params, rng):
    """Every share and CRP crosses bytes, and each protocol folds its shares in another order (the
    lead's last or in the middle); the joint keys from every order decrypt the same (within CKKS
    precision) and work."""
    ctx, parties = _new_parties(params, crp_through_bytes=True)
    cc = ctx.cc
    pk = [_wire(ctx, public_key.gen_share(p)) for p in parties]
    joint = _orders(ctx, public_key.aggregate, pk)
    assert len({j.key.GetKeyTag() for j in joint}) == 1
    public_key.finalize(ctx, joint[2])
    for p in parties:
        p.bind_to_joint_key()
    x, y = rng.uniform(-1, 1, ctx.slots), rng.uniform(-1, 1, ctx.slots)
    for j in joint:  # every order's joint key is a key of s_0 + s_1 + s_2
        assert _err(_decrypt(parties, ctx.encrypt(x, j.key)), x) <= TOL

    crp = _wire(ctx, relin.gen_crp(parties[0]))
    assert isinstance(crp, relin.RelinCrp)
    r1 = [_wire(ctx, relin.gen_round1(p, crp), key_tag=ctx.key_tag) for p in parties]
    round1 = _wire(ctx, relin.aggregate_round1(ctx, r1[2], relin.aggregate_round1(ctx, r1[0], r1[1])))
    r2 = [_wire(ctx, relin.gen_round2(p, round1)) for p in parties]
    relin.finalize(ctx, fold(ctx, relin.aggregate_round2, [r2[1], r2[0], r2[2]], ProtocolKind.RELIN_ROUND2))

    rots = [3, -2]
    rcrp = _wire(ctx, rotation.gen_crp(parties[0], rots), rotations=rots)
    assert isinstance(rcrp, rotation.RotationCrp) and rcrp.rotations == (-2, 3)
    shares = [_wire(ctx, rotation.gen_share(p, rcrp), rotations=rots) for p in parties]
    rotation.finalize(ctx, fold(ctx, rotation.aggregate, shares[::-1], ProtocolKind.ROTATION))

    ct = cc.EvalRotate(cc.EvalMult(ctx.encrypt(x), ctx.encrypt(y)), -2)
    dec = [_wire(ctx, decryption.gen_share(p, [ct])) for p in parties]
    got = decryption.finalize(ctx, fold(ctx, decryption.aggregate, dec[::-1], ProtocolKind.DECRYPTION))
    assert _err(got[0], np.roll(x * y, 2)) <= TOL


def test_decryption_pairwise_sum_equals_list_fusion(col3, rng):
    """Decryption shares (through bytes) summed pairwise with EvalAdd and fused once decode to
    exactly what fusing the list of every share (the former aggregation) decodes to, in any order."""
    ctx, cc = col3.context, col3.context.cc
    x = rng.uniform(-1, 1, ctx.slots)
    cts = [cc.EvalMult(col3.encrypt(x), col3.encrypt(x)), col3.encrypt(-x)]  # two levels
    shares = [_wire(ctx, decryption.gen_share(p, cts)) for p in col3.parties]
    before = [s.to_bytes(ctx) for s in shares]
    outs = [decryption.finalize(ctx, s) for s in _orders(ctx, decryption.aggregate, shares)]
    assert [s.to_bytes(ctx) for s in shares] == before
    for j, want in enumerate((x * x, -x)):
        pt = cc.MultipartyDecryptFusion([s.cts[j] for s in shares])
        pt.SetLength(ctx.slots)
        ref = np.asarray(pt.GetRealPackedValue())
        assert all(np.array_equal(o[j], ref) for o in outs)
        assert _err(ref, want) <= TOL


def test_refresh_pairwise_sum_equals_list_sum_and_keeps_inputs(col3, rng):
    """Refresh shares (through bytes) folded in any order re-encrypt to the same values as the
    former list sum (``IntMPBootAdd`` of every pair at once); the inputs stay as they were although
    OpenFHE's adder works in place."""
    ctx, cc = col3.context, col3.context.cc
    xs = [rng.uniform(-1, 1, ctx.slots) for _ in range(2)]
    req = refresh.prepare(ctx, [at_last_usable_level(col3, col3.encrypt(x)) for x in xs])
    shares = [_wire(ctx, refresh.gen_share(p, _wire(ctx, req)), count=2) for p in col3.parties]
    before = [s.to_bytes(ctx) for s in shares]
    outs = [refresh.finalize(ctx, req, s) for s in _orders(ctx, refresh.aggregate, shares)]
    assert [s.to_bytes(ctx) for s in shares] == before, "IntMPBootAdd modified an input"
    ref = refresh.RefreshShare(tuple(
        tuple(cc.IntMPBootAdd([[h.Clone() for h in s.pairs[j]] for s in shares])) for j in range(2)))
    outs.append(refresh.finalize(ctx, req, ref))
    assert all(c.GetLevel() == 0 for out in outs for c in out)
    vals = [col3.decrypt(out, flood=False) for out in outs]  # re-encryption adds fresh noise ~1e-9
    for got in vals:
        for g, want, r in zip(got, xs, vals[-1], strict=True):
            assert _err(g, want) <= TOL and _err(g, r) <= 1e-8
    # computed in process (no bytes in between), the sums are equal byte for byte
    local = [refresh.gen_share(p, req) for p in col3.parties]
    ref = [cc.IntMPBootAdd([[h.Clone() for h in s.pairs[j]] for s in local]) for j in range(2)]
    blob = _assert_same_bytes(ctx, _orders(ctx, refresh.aggregate, local))
    assert refresh.RefreshShare(tuple(tuple(p) for p in ref)).to_bytes(ctx) == blob


def test_refreshed_ciphertext_is_c0_and_the_crp(col3, rng):
    """A refreshed ciphertext's c1 is its request's CRP: its c0 part (through bytes, half the size)
    rejoined with the CRP a party read from the request's bytes decrypts to the same values; another
    ciphertext's CRP gives garbage, and a mismatched count is refused."""
    from rhode.mhe import serial as S

    ctx = col3.context
    xs = [rng.uniform(-1, 1, ctx.slots) for _ in range(2)]
    req = refresh.prepare(ctx, [at_last_usable_level(col3, col3.encrypt(x)) for x in xs])
    seen = _wire(ctx, req)  # a party's view of the request
    shares = [refresh.gen_share(p, seen) for p in col3.parties]
    agg = fold(ctx, refresh.aggregate, shares, ProtocolKind.REFRESH)
    out = refresh.finalize(ctx, req, agg)
    full = S.ciphertexts_to_bytes(ctx, out, S.Kind.CIPHERTEXTS)
    half = S.ciphertexts_to_bytes(ctx, refresh.strip(out), S.Kind.REFRESHED_C0)
    assert len(half) < 0.55 * len(full)
    c0s = S.ciphertexts_from_bytes(ctx, half, S.Kind.REFRESHED_C0)
    with pytest.raises(SerializationError, match="expected a refreshed_c0"):  # not a c0 part
        S.ciphertexts_from_bytes(ctx, full, S.Kind.REFRESHED_C0)
    back = refresh.rejoin(c0s, seen.crps)
    assert all(c.GetLevel() == 0 and c.NumberCiphertextElements() == 2 for c in back)
    for got, want in zip(col3.decrypt(back, flood=False), col3.decrypt(out, flood=False), strict=True):
        assert _err(got, want) <= 1e-8  # the same ciphertext: only the decryption shares' own noise
    swapped = refresh.rejoin(c0s, seen.crps[::-1])
    assert _err(col3.decrypt(swapped, flood=False)[0], xs[0]) > 1.0
    with pytest.raises(ProtocolError, match="2 refreshed ciphertexts for the 1 CRPs"):
        refresh.rejoin(c0s, seen.crps[:1])
    with pytest.raises(ProtocolError, match="has 2 elements"):
        refresh.strip(c0s)


def test_key_switch_order_independent(col3, rng):
    """Key-switch shares (through bytes) summed in any order decrypt, for the querier, exactly to
    what the former sequential sum decrypts to."""
    ctx, cc = col3.context, col3.context.cc
    x = rng.uniform(-1, 1, ctx.slots)
    cts = [cc.EvalMult(col3.encrypt(x), 1.0)]
    q = Querier(ctx)
    shares = [_wire(ctx, key_switch.gen_share(p, cts, q.public_key), key_tag=q.public_key.GetKeyTag())
              for p in col3.parties]
    before = [s.to_bytes(ctx) for s in shares]
    outs = [q.decrypt(key_switch.finalize(ctx, s))[0] for s in _orders(ctx, key_switch.aggregate, shares)]
    assert [s.to_bytes(ctx) for s in shares] == before
    ref = shares[0].cts[0]
    for s in shares[1:]:
        ref = cc.EvalAdd(ref, s.cts[0])
    want = q.decrypt([ref])[0]
    assert all(np.array_equal(o, want) for o in outs)
    assert _err(want, x) <= TOL


def _share_samples(col):
    """(name, share, from_bytes keyword arguments, a share type of another kind) per share type."""
    ctx = col.context
    lead, p1 = col.parties[0], col.parties[1]
    ct = col.encrypt([0.25, -0.5])
    req = refresh.prepare(ctx, [at_last_usable_level(col, col.encrypt([0.5]))])
    q = Querier(ctx)
    rcrp = rotation.gen_crp(lead, [5])
    r1 = relin.gen_round1(p1, relin.gen_crp(lead))
    return [
        ("public_key", public_key.gen_share(p1), {}, relin.RelinRound1Share),
        ("public_key_crp", public_key.PublicKeyCrp.of(public_key.gen_share(lead)), {},
         decryption.DecryptionShare),
        ("relin_round1", r1, {"key_tag": ctx.key_tag}, relin.RelinRound2Share),
        ("relin_round2", relin.gen_round2(p1, r1), {}, relin.RelinRound1Share),
        ("rotation_crp", rcrp, {"rotations": [5]}, public_key.PublicKeyShare),
        ("rotation", rotation.gen_share(p1, rcrp), {"rotations": [5]}, relin.RelinRound2Share),
        ("decryption", decryption.gen_share(p1, [ct, ct]), {"count": 2}, key_switch.KeySwitchShare),
        ("key_switch", key_switch.gen_share(p1, [ct], q.public_key), {"key_tag": q.public_key.GetKeyTag()},
         decryption.DecryptionShare),
        ("refresh", refresh.gen_share(p1, req), {"count": 1}, decryption.DecryptionShare),
        ("refresh_request", req, {}, refresh.RefreshShare),
    ]


@pytest.fixture(scope="module")
def samples(collectives):
    return _share_samples(collectives[2])


@pytest.mark.parametrize("i", range(10))
def test_share_bytes_round_trip_and_reject_damage(collectives, samples, i):
    ctx = collectives[2].context
    name, share, kw, other = samples[i]
    data = share.to_bytes(ctx)
    back = type(share).from_bytes(ctx, data, **kw)
    assert type(back) is type(share)
    # values: the protocol tests above run on shares read from bytes; here the form is stable
    # (OpenFHE writes an object read from bytes with its own copy of the ring parameters)
    again = back.to_bytes(ctx)
    assert type(share).from_bytes(ctx, again, **kw).to_bytes(ctx) == again, name
    for f in ("rotations",):
        assert getattr(back, f, None) == getattr(share, f, None)
    for f in ("cts", "pairs", "c1s", "crps"):
        assert len(getattr(back, f, ())) == len(getattr(share, f, ()))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    damaged = [bytes(flipped), data[:-3], data + b"\0", data[:40], b"RHDE" + data[4:9]]
    for bad in damaged:
        with pytest.raises(SerializationError):
            type(share).from_bytes(ctx, bad, **kw)
    with pytest.raises(SerializationError, match="expected a"):  # a share of another kind
        other.from_bytes(ctx, data)


def test_wrong_counts_rotations_and_roles_are_refused(col3, rng):
    ctx = col3.context
    ct = col3.encrypt(rng.uniform(-1, 1, 4))
    a = decryption.gen_share(col3.parties[0], [ct, ct])
    b = decryption.gen_share(col3.parties[1], [ct])
    with pytest.raises(ProtocolError, match="one decryption share per ciphertext"):
        decryption.aggregate(ctx, a, b)
    with pytest.raises(ProtocolError, match="no refresh shares"):
        fold(ctx, refresh.aggregate, [], ProtocolKind.REFRESH)
    with pytest.raises(ProtocolError, match="only the lead"):
        relin.gen_crp(col3.parties[1])
    with pytest.raises(ProtocolError, match="only the lead"):
        rotation.gen_crp(col3.parties[2], [1])
    with pytest.raises(ProtocolError, match="needs the lead's round-1 share"):
        relin.gen_round1(col3.parties[1], None)
    crp = rotation.gen_crp(col3.parties[0], [7])
    other = rotation.gen_crp(col3.parties[0], [8])
    with pytest.raises(ProtocolError, match="different rotations"):
        rotation.aggregate(ctx, rotation.gen_share(col3.parties[1], crp), other)


def test_accumulator_folds_as_shares_arrive(col3, rng):
    ctx = col3.context
    x = rng.uniform(-1, 1, ctx.slots)
    ct = col3.encrypt(x)
    acc = Accumulator(ctx, decryption.aggregate, ProtocolKind.DECRYPTION)
    for p in reversed(col3.parties):  # the lead's share last
        acc.add(decryption.gen_share(p, [ct]))
    assert acc.count == 3
    assert _err(decryption.finalize(ctx, acc.result())[0], x) <= TOL
