"""Threshold decryption with noise flooding (Lattigo ``keyswitch`` towards the zero key, OpenFHE's
``MultipartyDecrypt{Lead,Main,Fusion}``).

Each party's share of a ciphertext ``(c0, c1)`` is one polynomial: ``c1 s_i + e_i`` (the lead's adds
``c0``), plus flooding noise (below). Fusion sums the shares and decodes. The sum is exact modular
addition, so shares are aggregated pairwise with ``EvalAdd`` on these one-element ciphertexts and
the aggregate is fused once (``MultipartyDecryptFusion`` of a single summed share): checked on real
ciphertexts to give bit-identical plaintexts to fusing the list of every share (tests/mhe). Hence
commutative and associative; the lead's share is one share among the others. Works at any level.

Flooding (see :mod:`rhode.mhe.flooding` for why and for the measurement of the noise bound): every
share that leaves its owner gets fresh i.i.d. complex Gaussian slot noise of standard deviation
``2^(flood_bits - scale_bits)`` per real component, drawn from the OS CSPRNG and added as a CKKS
plaintext at the ciphertext's level and scale degree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from rhode.errors import ProtocolError
from rhode.mhe.context import Ciphertext, MheContext
from rhode.mhe.protocols.base import CiphertextShare, ProtocolKind, SecretHolder, check_same_count
from rhode.mhe.serial import Kind


# -- flooding -----------------------------------------------------------------------------------------
def gaussian_slots(n: int, sigma: float) -> np.ndarray:
    """``n`` i.i.d. circular complex Gaussians, each of real and imaginary std ``sigma`` (OS CSPRNG)."""
    u = np.frombuffer(os.urandom(16 * n), dtype=np.uint64).astype(np.float64).reshape(2, n)
    u = (u + 0.5) / 2.0**64  # in (0, 1)
    r = np.sqrt(-2.0 * np.log(u[0])) * sigma
    theta = 2.0 * np.pi * u[1]
    return r * np.cos(theta) + 1j * r * np.sin(theta)


def flood_sigma(context: MheContext) -> float:
    """Flooding standard deviation per real component of a slot, in message units."""
    p = context.params
    return 2.0 ** (p.flood_bits - p.scale_bits)


def flood_share(context: MheContext, share: Ciphertext, ct: Ciphertext) -> Ciphertext:
    """Add flooding noise to a decryption share of ``ct`` (same level and scale degree as ``ct``)."""
    cc = context.cc
    noise = gaussian_slots(context.slots, flood_sigma(context))
    pt = cc.MakeCKKSPackedPlaintext(noise, ct.GetNoiseScaleDeg(), ct.GetLevel())
    return cc.EvalAdd(share, pt)


# -- the protocol ---------------------------------------------------------------------------------------
class DecryptionShare(CiphertextShare):
    """One party's decryption shares of a batch of ciphertexts (one one-element ciphertext each, at
    the level of its ciphertext, under the joint key's tag), or a partial sum of several parties'
    shares of the same batch."""

    KIND = Kind.DECRYPTION_SHARES
    PROTOCOL = ProtocolKind.DECRYPTION


def gen_share(party: SecretHolder, cts: Sequence[Ciphertext], flood: bool = True) -> DecryptionShare:
    """The party's shares of ``cts`` (any level; the lead's carry ``c0``).

    With ``flood`` (the default) each share carries noise flooding, as every share that leaves its
    owner must; ``flood=False`` is for shares that stay in-process."""
    ctx = party.context
    cts = list(cts)
    fn = ctx.cc.MultipartyDecryptLead if party.is_lead else ctx.cc.MultipartyDecryptMain
    shares = list(party.with_secret(lambda s: fn(cts, s)))
    if flood:
        shares = [flood_share(ctx, d, ct) for d, ct in zip(shares, cts, strict=True)]
    return DecryptionShare(tuple(shares))


def add_ciphertexts(context: MheContext, a: Sequence[Ciphertext], b: Sequence[Ciphertext],
                    what: ProtocolKind) -> tuple[Ciphertext, ...]:
    """Slot-wise ``EvalAdd`` of two equally long lists of shares of the same ciphertexts (equal
    levels); new ciphertexts, the inputs are left as they are."""
    check_same_count(len(a), len(b), what)
    out = []
    for x, y in zip(a, b, strict=True):
        if x.GetLevel() != y.GetLevel() or x.GetNoiseScaleDeg() != y.GetNoiseScaleDeg():
            raise ProtocolError(f"{what.value} shares of one ciphertext must have one level and scale")
        try:
            out.append(context.cc.EvalAdd(x, y))
        except RuntimeError:
            raise ProtocolError(f"{what.value} shares cannot be added (other keys or contexts)") from None
    return tuple(out)


def aggregate(context: MheContext, a: DecryptionShare, b: DecryptionShare) -> DecryptionShare:
    """Sum two shares (or partial sums) of the same batch."""
    return DecryptionShare(add_ciphertexts(context, a.cts, b.cts, ProtocolKind.DECRYPTION))


def finalize(context: MheContext, aggregated: DecryptionShare, length: int | None = None) -> list[np.ndarray]:
    """Decode the sum of every party's shares: one float64 array of ``length`` (default: all slots)
    real values per ciphertext. A sum that OpenFHE cannot decode (as with missing shares) raises
    :class:`ProtocolError`; a sum that misses a share decodes to noise."""
    length = context.slots if length is None else int(length)
    if not 1 <= length <= context.slots:
        raise ProtocolError(f"length must be between 1 and {context.slots}, got {length}")
    out = []
    for d in aggregated.cts:
        try:
            pt = context.cc.MultipartyDecryptFusion([d])
            pt.SetLength(length)
            out.append(np.asarray(pt.GetRealPackedValue(), dtype=np.float64))
        except RuntimeError:
            raise ProtocolError(
                "threshold decryption failed to decode (missing or wrong shares, or too much noise)"
            ) from None
    return out
