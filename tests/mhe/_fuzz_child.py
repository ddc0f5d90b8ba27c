"""Run in a child process by test_fuzz.py: feed corrupted and truncated bytes to every deserializer.

Every input must raise a RhodeError; anything else (another exception, or no exception) is reported
and the exit status is 1. A crash of the interpreter shows up as a negative exit status.
argv: number of cases per deserializer, seed, mode ("frame" or "payload").
"""

from __future__ import annotations

import json
import random
import sys

from rhode.errors import RhodeError
from rhode.mhe import LocalCollective, Party, Querier, preset
from rhode.mhe import serial as S
from rhode.mhe.protocols import decryption, key_switch, refresh, relin, rotation


def samples(col):
    """(name, valid bytes, deserializer) for every deserializer (a share type's ``from_bytes`` is
    its codec of rhode.mhe.serial)."""
    ctx = col.context
    ct = col.encrypt([0.25, -0.5])
    low = ct
    for _ in range(ctx.params.usable_levels):
        low = ctx.cc.EvalMult(low, 1.0)
    req = refresh.prepare(ctx, [low])
    p1 = col.parties[1]
    q = Querier(ctx)
    lead = col.parties[0]
    return [
        ("context", S.context_to_bytes(ctx), S.context_from_bytes),
        ("public_key", S.public_key_to_bytes(ctx, ctx.public_key), lambda b: S.public_key_from_bytes(ctx, b)),
        ("secret_share", p1.secret_bytes(), lambda b: Party.from_secret_bytes(ctx, b)),
        ("ciphertexts", S.ciphertexts_to_bytes(ctx, [ct, ct]), lambda b: S.ciphertexts_from_bytes(ctx, b)),
        ("decryption_shares", decryption.gen_share(p1, [ct]).to_bytes(ctx),
         lambda b: decryption.DecryptionShare.from_bytes(ctx, b)),
        ("key_switch_shares", key_switch.gen_share(p1, [ct], q.public_key).to_bytes(ctx),
         lambda b: key_switch.KeySwitchShare.from_bytes(ctx, b, key_tag=q.public_key.GetKeyTag())),
        ("refresh_request", req.to_bytes(ctx), lambda b: refresh.RefreshRequest.from_bytes(ctx, b)),
        ("refresh_shares", refresh.gen_share(p1, req).to_bytes(ctx),
         lambda b: refresh.RefreshShare.from_bytes(ctx, b)),
        ("relin_share", relin.gen_crp(lead).to_bytes(ctx),
         lambda b: relin.RelinRound1Share.from_bytes(ctx, b)),
        ("rotation_share", rotation.gen_crp(lead, [1]).to_bytes(ctx),
         lambda b: rotation.RotationShare.from_bytes(ctx, b, rotations=[1])),
        ("eval_keys", S.eval_keys_to_bytes(ctx), lambda b: S.load_eval_keys(ctx, b)),
    ]


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """A corrupted or truncated variant of a framed byte string (never equal to it)."""
    choice = rnd.randrange(6)
    if choice == 0:  # truncation
        return data[:rnd.randrange(len(data))]
    if choice == 1:  # flipped bits anywhere
        b = bytearray(data)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        return bytes(b)
    if choice == 2:  # damaged header
        b = bytearray(data)
        b[rnd.randrange(min(len(b), 64))] ^= 0xFF
        return bytes(b)
    if choice == 3:  # random garbage
        return rnd.randbytes(rnd.randrange(0, 4096))
    if choice == 4:  # trailing bytes
        return data + rnd.randbytes(rnd.randint(1, 64))
    # chunk removed from the middle
    i = rnd.randrange(len(data))
    return data[:i] + data[i + rnd.randint(1, 1024):]


def reframe(data: bytes, rnd: random.Random) -> bytes:
    """Valid header and digest around a damaged OpenFHE payload (what a faulty peer could send)."""
    kind = S.peek_kind(data)
    payload, meta = S.unframe(kind, None, data)
    b = bytearray(payload)
    if rnd.random() < 0.5:
        for _ in range(rnd.randint(1, 16)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    else:
        b = b[:rnd.randrange(1, len(b))]
        meta["sizes"] = [len(b)] if len(meta.get("sizes", [])) == 1 else meta.get("sizes")
    head = S._HEAD.unpack_from(data)
    body = json.dumps(meta, sort_keys=True).encode()
    h = S._HEAD.pack(S.MAGIC, S.VERSION, head[2], head[3], len(body), len(b))
    return h + S._digest(h, body, bytes(b)) + body + bytes(b)


def main(n: int, seed: int, mode: str) -> int:
    col = LocalCollective(preset("test"), 2, rotations=[1], measure_bytes=False)
    rnd = random.Random(seed)
    bad = 0
    for name, data, fn in samples(col):
        fn(data)  # the valid input is accepted
        for _ in range(n):
            blob = mutate(data, rnd) if mode == "frame" else reframe(data, rnd)
            if blob == data:
                continue
            try:
                fn(blob)
            except RhodeError:
                continue
            except Exception as exc:  # noqa: BLE001 - reported as a failure
                print(f"{name}: {type(exc).__name__} escaped", flush=True)
                bad += 1
                continue
            if mode == "frame":
                print(f"{name}: corrupted input accepted", flush=True)
                bad += 1
        print(f"{name}: {n} cases", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
