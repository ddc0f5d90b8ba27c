"""Why `rhode.mhe.serial.native` exists: OpenFHE operations on ciphertexts read back from bytes.

Prints, at the `test` preset (ring 2^13), the median CPU milliseconds of EvalAdd and EvalMult on a
ciphertext as made in this process, as deserialized by OpenFHE alone, and as returned by
`rhode.mhe.serial.ciphertexts_from_bytes` (re-based), plus the cost of (de)serialization itself:
OpenFHE's DeserializeCiphertextString with its default CRT precomputation for the crypto parameters
every ciphertext carries, and without it (what `ciphertexts_from_bytes` does for a loaded context).

    OMP_NUM_THREADS=1 .venv/bin/python bench/deserialized_ops.py
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import openfhe as fhe  # noqa: E402

from rhode.mhe import LocalCollective, preset  # noqa: E402
from rhode.mhe import serial as S  # noqa: E402


def ms(fn, n: int = 30) -> float:
    """Median CPU milliseconds of ``fn()`` over ``n`` calls."""
    out = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        out.append((time.process_time() - t0) * 1e3)
    return statistics.median(out)


def main() -> None:
    coll = LocalCollective(preset("test"), 2, measure_bytes=False)
    ctx = coll.context
    cc = ctx.cc
    ct = coll.encrypt(np.random.default_rng(0).uniform(-1, 1, 16))
    raw = fhe.Serialize(ct, fhe.BINARY)
    framed = S.ciphertexts_to_bytes(ctx, [ct])
    plain = fhe.DeserializeCiphertextString(raw, fhe.BINARY)
    (rebased,) = S.ciphertexts_from_bytes(ctx, framed, count=1)
    print(f"test preset, ring 2^13, level-0 ciphertext of {len(raw) / 2**20:.2f} MiB; median CPU ms")
    print("| ciphertext | EvalAdd | EvalMult |\n|---|---|---|")
    for name, x in (("made in this process", ct), ("deserialized by OpenFHE", plain),
                    ("from ciphertexts_from_bytes (re-based)", rebased)):
        print(f"| {name} | {ms(lambda x=x: cc.EvalAdd(x, x)):.2f} | {ms(lambda x=x: cc.EvalMult(x, x), 10):.2f} |")
    deser = ms(lambda: fhe.DeserializeCiphertextString(raw, fhe.BINARY), 10)
    with S._no_crt_precompute():
        deser_fast = ms(lambda: fhe.DeserializeCiphertextString(raw, fhe.BINARY), 10)
    print(f"Serialize {ms(lambda: fhe.Serialize(ct, fhe.BINARY)):.2f} ms, "
          f"DeserializeCiphertextString {deser:.2f} ms ({deser_fast:.2f} ms without CRT precomputation), "
          f"ciphertexts_to_bytes {ms(lambda: S.ciphertexts_to_bytes(ctx, [ct])):.2f} ms, "
          f"ciphertexts_from_bytes {ms(lambda: S.ciphertexts_from_bytes(ctx, framed, count=1), 10):.2f} ms")


if __name__ == "__main__":
    main()
