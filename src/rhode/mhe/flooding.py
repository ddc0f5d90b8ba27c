"""Noise flooding of decryption and key-switch shares, and the script that measures its noise bound.

A CKKS decryption reveals ``m + e`` where the ciphertext noise ``e`` depends on the secret key; a
threshold-decryption share further reveals ``c1 * s_i + e_i``. Without flooding, parties that see the
shares (the aggregator, a querier, up to N-1 colluding holders) learn key-dependent noise (Li and
Micciancio's attack on CKKS decryption). Each revealed share therefore gets fresh Gaussian noise of
standard deviation ``2^(stat_bits/2) * sqrt(12) * 2^noise_bits`` (in units of the ciphertext's scale),
the rule OpenFHE's own NOISE_FLOODING_DECRYPT mode uses, where ``2^noise_bits`` is the noise standard
deviation (in slot units) of the ciphertexts that are revealed (measured below, stored per preset in
:mod:`rhode.mhe.params`).

Why not OpenFHE's flooding mode: in 1.6.1 it forces a 59-bit scale at every level, which no 2^14 ring
holds at 128-bit security beyond depth 3. Here the flooding is added by the party to its share as a
CKKS plaintext of i.i.d. complex Gaussian slot values (drawn from the OS CSPRNG). The canonical
embedding is a scaled isometry, so i.i.d. Gaussian slots are i.i.d. Gaussian coefficients; with the
COMPLEX data type the encoding keeps real and imaginary parts, so every coefficient is flooded.

The flooding itself is part of the decryption protocol (:mod:`rhode.mhe.protocols.decryption`:
``gaussian_slots``, ``flood_sigma``, ``flood_share``); this module holds the measurement. Run
``python -m rhode.mhe.flooding [preset ...]`` to re-measure the noise bound, ``python -m
rhode.mhe.flooding --budgets`` for the precision left as a function of the decryption budget.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from rhode.mhe.collective import LocalCollective
from rhode.mhe.context import Ciphertext
from rhode.mhe.params import MIN_REVEAL_BITS, CkksParams, preset


def measure_noise_bits(params: CkksParams, n_parties: int = 3, trials: int = 3) -> dict[str, float]:
    """Measure log2 of the slot-noise standard deviation (in units of the scale; the quantity OpenFHE's
    EXEC_NOISE_ESTIMATION reports) of the ciphertexts a run may
    reveal: fresh, refreshed, after a product, after a rotation, after a 16-term dot product and after
    a degree-7 polynomial. Uses a debug-only joint secret (never in production code paths).

    Returns ``{circuit: bits}`` plus ``"max"``.
    """
    col = LocalCollective(params, n_parties, rotations=[1], measure_bytes=False)
    cc = col.context.cc
    joint_secret = cc.MultipartyKeyGen([p._secret for p in col.parties]).secretKey
    slots = col.context.slots
    rng = np.random.default_rng(0)

    def bits(ct: Ciphertext, ref: np.ndarray) -> float:
        pt = cc.Decrypt(joint_secret, ct)
        pt.SetLength(slots)
        err = np.asarray(pt.GetCKKSPackedValue()) - ref
        std = math.sqrt(float(np.mean(np.abs(err) ** 2)) / 2)  # per real component
        return math.log2(max(std, 1e-300)) + params.scale_bits

    out: dict[str, list[float]] = {}
    for _ in range(trials):
        x = rng.uniform(-1, 1, slots)
        y = rng.uniform(-1, 1, slots)
        cx, cy = col.encrypt(x), col.encrypt(y)
        low = cx
        for _ in range(params.usable_levels):
            low = cc.EvalMult(low, 1.0)
        res = {
            "fresh": bits(cx, x),
            "refreshed": bits(col.refresh([low])[0], x),
            "product": bits(cc.EvalMult(cx, cy), x * y),
            "rotation": bits(cc.EvalRotate(cx, 1), np.roll(x, -1)),
        }
        acc = cc.EvalMult(cx, cy)
        for _ in range(15):
            acc = cc.EvalAdd(acc, cc.EvalMult(cx, cy))
        res["dot16"] = bits(acc, 16 * x * y)
        coeffs = [0.0, 1.2, 0.0, -0.5, 0.0, 0.1, 0.0, -0.02]
        res["poly7"] = bits(cc.EvalPoly(cx, coeffs), np.polynomial.polynomial.polyval(x, coeffs))
        for k, v in res.items():
            out.setdefault(k, []).append(v)
    summary = {k: max(v) for k, v in out.items()}
    summary["max"] = max(summary.values())
    return summary


BUDGETS = (1, 10, 30, 100, 300, 1000, 10_000)


def budget_table(names: tuple[str, ...] = ("test", "default", "deep")) -> str:
    """Markdown table of the precision left in a revealed value (``reveal_precision_bits``, per share)
    as a function of the decryption budget q; '-' where the preset refuses q (fewer than 8 bits)."""
    rows = ["| preset | " + " | ".join(f"q = {q:,}" for q in BUDGETS) + " |",
            "|---|" + "---|" * len(BUDGETS)]
    for name in names:
        bits = [preset(name).reveal_precision_bits - 0.5 * math.log2(q) for q in BUDGETS]  # q = 1 minus
        cells = [f"{b:.1f}" if b >= MIN_REVEAL_BITS else "-" for b in bits]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str]) -> None:  # pragma: no cover - measurement script
    """Measure and print the noise bound of each named preset (default: all three); ``--budgets``
    prints the precision table of docs/security.md instead."""
    if argv[:1] == ["--budgets"]:
        print(budget_table())
        return
    for name in argv or ["test", "default", "deep"]:
        s = measure_noise_bits(preset(name))
        print(name, " ".join(f"{k}={v:.2f}" for k, v in s.items()),
              f"-> NOISE_BITS[{name!r}] = {math.ceil(s['max']) + 1:.1f}")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
