"""CKKS parameter presets and validation (the only place where CryptoContexts are configured).

A :class:`CkksParams` names everything that fixes a CryptoContext. Presets:

* ``test``    ring 2^13, insecure (``HEStd_NotSet``), depth 10 at a 50-bit scale: unit tests only,
  refused unless named. (OpenFHE adds 2^20-sigma noise to every decryption share, so a 40-bit
  scale would decrypt only to ~1e-3.)
* ``default`` ring 2^14, 128-bit classic security, depth 7 at a 35-bit scale.
* ``deep``    ring 2^15, 128-bit classic security, depth 12 at a 40-bit scale (fewer refreshes:
  what a deployment, where each refresh is a network round, prefers).

Refresh (interactive multiparty bootstrapping) needs three RNS towers left, so a ciphertext refreshed
to level 0 may spend ``depth - 2`` levels before it must be refreshed again (``usable_levels``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import openfhe as fhe

from rhode.errors import ParameterError

# Largest log2 Q per ring dimension at 128-bit classic security (HomomorphicEncryption.org standard).
_MAX_LOGQ_128 = {1 << 13: 218, 1 << 14: 438, 1 << 15: 881, 1 << 16: 1761}


@dataclass(frozen=True)
class CkksParams:
    """Parameters of one threshold-CKKS CryptoContext.

    Attributes:
        name: preset name (or ``"custom"``).
        ring_dim: ring dimension N (power of two); a ciphertext has N/2 slots.
        depth: multiplicative depth L of a fresh (level 0) ciphertext.
        scale_bits: bits of the scaling modulus (precision of each level).
        first_mod_bits: bits of the first modulus (precision of the decrypted result).
        secure: 128-bit classic security; False only for the named ``test`` preset.
    """

    name: str
    ring_dim: int
    depth: int
    scale_bits: int
    first_mod_bits: int
    secure: bool = True

    @property
    def slots(self) -> int:
        """Number of CKKS slots (N/2)."""
        return self.ring_dim // 2

    @property
    def usable_levels(self) -> int:
        """Levels a ciphertext at level 0 may consume and still be refreshed (3 towers must remain)."""
        return self.depth - 2

    @property
    def log_q(self) -> int:
        """Approximate bits of the ciphertext modulus at level 0."""
        return self.first_mod_bits + self.depth * self.scale_bits

    def validate(self) -> CkksParams:
        """Reject inconsistent parameters with a :class:`ParameterError`; return ``self``."""
        n = self.ring_dim
        if n < (1 << 12) or n > (1 << 17) or n & (n - 1):
            raise ParameterError(
                f"ring_dim must be a power of two between 2^12 and 2^17, got {n}")
        if not 3 <= self.depth <= 40:
            raise ParameterError(
                f"depth must be between 3 and 40 (refresh needs 3 towers), got {self.depth}")
        if not 20 <= self.scale_bits <= 59:
            raise ParameterError(f"scale_bits must be between 20 and 59, got {self.scale_bits}")
        if not self.scale_bits < self.first_mod_bits <= 60:
            raise ParameterError(
                f"first_mod_bits must exceed scale_bits ({self.scale_bits}) and be at most 60, "
                f"got {self.first_mod_bits}")
        if self.secure:
            limit = _MAX_LOGQ_128.get(n)
            # HYBRID key switching adds auxiliary moduli (about one scale's worth per digit).
            if limit is None or self.log_q + self.scale_bits + 10 > limit:
                raise ParameterError(
                    f"ring_dim {n} with depth {self.depth} and {self.scale_bits}-bit scale "
                    f"(log Q ~ {self.log_q}) is not 128-bit secure; lower the depth or use a larger "
                    "ring (preset 'deep')")
        return self

    def to_dict(self) -> dict:
        """Plain dict (for reports, checkpoints and messages)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CkksParams:
        """Inverse of :meth:`to_dict`, validated."""
        try:
            return cls(**d).validate()
        except TypeError as exc:
            raise ParameterError(f"malformed CKKS parameters {d!r}: {exc}") from None


PRESETS: dict[str, CkksParams] = {
    "test": CkksParams("test", 1 << 13, 10, 50, 60, secure=False),
    "default": CkksParams("default", 1 << 14, 7, 35, 45),
    "deep": CkksParams("deep", 1 << 15, 12, 40, 50),
}


def preset(name: str) -> CkksParams:
    """Return the named preset, validated. ``test`` is insecure and meant for unit tests only."""
    try:
        return PRESETS[name].validate()
    except KeyError:
        raise ParameterError(
            f"unknown parameter preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def make_context(params: CkksParams) -> fhe.CryptoContext:
    """Build the CryptoContext for ``params`` with PKE, key switching, leveled SHE, advanced SHE and
    multiparty features enabled. Scaling is FIXEDAUTO (OpenFHE rescales before the next product)."""
    params.validate()
    p = fhe.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(params.depth)
    p.SetScalingModSize(params.scale_bits)
    p.SetFirstModSize(params.first_mod_bits)
    p.SetScalingTechnique(fhe.FIXEDAUTO)
    p.SetKeySwitchTechnique(fhe.HYBRID)
    p.SetSecretKeyDist(fhe.UNIFORM_TERNARY)
    p.SetInteractiveBootCompressionLevel(fhe.COMPACT)
    p.SetBatchSize(params.slots)
    if params.secure:
        p.SetSecurityLevel(fhe.HEStd_128_classic)
    else:
        p.SetSecurityLevel(fhe.HEStd_NotSet)
    p.SetRingDim(params.ring_dim)
    try:
        cc = fhe.GenCryptoContext(p)
    except Exception as exc:  # OpenFHE rejects insecure or impossible combinations
        raise ParameterError(f"OpenFHE rejected parameters {params.to_dict()}: {exc}") from None
    for feature in (fhe.PKE, fhe.KEYSWITCH, fhe.LEVELEDSHE, fhe.ADVANCEDSHE, fhe.MULTIPARTY):
        cc.Enable(feature)
    return cc
