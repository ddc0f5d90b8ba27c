"""CKKS parameter presets and validation (the only place where CryptoContexts are configured).

A :class:`CkksParams` names everything that fixes a CryptoContext. Presets:

* ``test``    ring 2^13, insecure (``HEStd_NotSet``), depth 10 at a 59-bit scale: unit tests only,
  refused unless named.
* ``default`` ring 2^14, 128-bit classic security, depth 5 at a 50-bit scale.
* ``deep``    ring 2^15, 128-bit classic security, depth 11 at a 52-bit scale (fewer refreshes:
  what a deployment, where each refresh is a network round, prefers).

Why such large scales: every decryption or key-switch share that is revealed carries noise flooding
(see :mod:`rhode.mhe.flooding`), whose standard deviation is ``2^(stat_bits/2) * sqrt(12 q) *
2^noise_bits`` in units of the scale for a decryption budget of ``q`` revealed ciphertexts, about 2^38
for ciphertext noise of 2^21 and q = 1. A revealed value keeps ``scale_bits - flood_bits`` bits of
precision (``reveal_precision_bits`` at q = 1: test 22, default 12, deep 13; half a bit less
per doubling of q), so 35-40-bit scales would reveal nothing useful. At 128-bit security 2^14 then
holds depth 5 and 2^15 depth 11. The contexts use OpenFHE's COMPLEX CKKS data type so that the
flooding, drawn in the slot domain, covers every coefficient of the decryption share (with REAL,
imaginary parts would be dropped).

Refresh (interactive multiparty bootstrapping) needs three RNS towers left, so a ciphertext refreshed
to level 0 may spend ``depth - 2`` levels before it must be refreshed again (``usable_levels``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import openfhe as fhe

from rhode.errors import ParameterError

# Noise of fresh, refreshed and computed ciphertexts: log2 of the slot-noise standard deviation in units
# of the scale, measured with `python -m rhode.mhe.flooding` (max over circuits and trials, rounded up,
# plus one bit of margin).
NOISE_BITS = {"test": 20.0, "default": 21.0, "deep": 22.0}

#: Bits of precision a revealed (flooded) value must keep: parameters leaving fewer are refused.
MIN_REVEAL_BITS = 8

#: Most ciphertexts one joint key may be planned to reveal (2^30: flooding 15 bits above q = 1).
MAX_BUDGET = 1 << 30

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
        noise_bits: log2 of a bound on the noise of a ciphertext that is revealed, in units of its
            scale (measured by ``python -m rhode.mhe.flooding``); sets the flooding noise.
        stat_bits: statistical security of noise flooding (bits).
        decryption_budget: how many ciphertexts may be revealed (threshold-decrypted or switched to a
            querier) under one joint key; the flooding is sized for that many adversarial queries
            (OpenFHE's ``SetNumAdversarialQueries``, see :attr:`flood_bits`).
    """

    name: str
    ring_dim: int
    depth: int
    scale_bits: int
    first_mod_bits: int
    secure: bool = True
    noise_bits: float = 20.0
    stat_bits: int = 30
    decryption_budget: int = 1

    @property
    def slots(self) -> int:
        """Number of CKKS slots (N/2)."""
        return self.ring_dim // 2

    @property
    def usable_levels(self) -> int:
        """Levels a ciphertext at level 0 may consume and still be refreshed (3 towers must remain)."""
        return self.depth - 2

    @property
    def rotation_key_bytes(self) -> int:
        """Estimated bytes of one serialized rotation key (or key share): HYBRID key switching with
        OpenFHE's 3 digits, ``16 N * 3 * (L + 1 + ceil((L + 1) / 3))``; within 6 % of the measured size
        for every preset (test 6.3 MB, default 6.3 MB, deep 25.2 MB)."""
        towers = self.depth + 1
        return 16 * self.ring_dim * 3 * (towers + -(-towers // 3))

    @property
    def log_q(self) -> int:
        """Approximate bits of the ciphertext modulus at level 0."""
        return self.first_mod_bits + self.depth * self.scale_bits

    @property
    def flood_bits(self) -> float:
        """log2 of the flooding standard deviation per share (in units of the scale): OpenFHE's rule for
        ``q = decryption_budget`` adversarial queries, ``stat_bits / 2 + log2 sqrt(12 q) + noise_bits``."""
        return self.stat_bits / 2 + 0.5 * math.log2(12 * self.decryption_budget) + self.noise_bits

    @property
    def reveal_precision_bits(self) -> float:
        """Bits of precision left in a revealed (flooded) value of magnitude ~1, per share."""
        return self.scale_bits - self.flood_bits

    def reveal_error_bound(self, n_parties: int, sigmas: float = 8.0) -> float:
        """Bound on the absolute error of one revealed real value (message units) when ``n_parties``
        flooded shares are summed: ``sigmas`` standard deviations of their Gaussian sum,
        ``sigmas * sqrt(n_parties) * 2^-reveal_precision_bits`` (8: exceeded with probability < 1e-15
        per value; the ciphertext noise, 2^(noise_bits - scale_bits), is far below it)."""
        return sigmas * math.sqrt(n_parties) * 2.0 ** -self.reveal_precision_bits

    def with_budget(self, decryption_budget: int) -> CkksParams:
        """These parameters with the flooding sized for ``decryption_budget`` revealed ciphertexts."""
        return dataclasses.replace(self, decryption_budget=int(decryption_budget)).validate()

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
        if not 0 <= self.noise_bits <= 40 or not 20 <= self.stat_bits <= 80:
            raise ParameterError(
                f"noise_bits must be in [0, 40] and stat_bits in [20, 80], got {self.noise_bits} and "
                f"{self.stat_bits}")
        if not isinstance(self.decryption_budget, int) or not 1 <= self.decryption_budget <= MAX_BUDGET:
            raise ParameterError(f"the decryption budget must be an integer between 1 and {MAX_BUDGET}, "
                                 f"got {self.decryption_budget!r}")
        if self.reveal_precision_bits < MIN_REVEAL_BITS:
            raise ParameterError(
                f"a {self.scale_bits}-bit scale leaves {self.reveal_precision_bits:.1f} bits of precision "
                f"after noise flooding sized for {self.decryption_budget} decryptions "
                f"({self.flood_bits:.1f} bits); plan fewer decryptions or "
                f"use a scale of at least {math.ceil(self.flood_bits) + MIN_REVEAL_BITS} bits")
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
    "test": CkksParams("test", 1 << 13, 10, 59, 60, secure=False, noise_bits=NOISE_BITS["test"]),
    "default": CkksParams("default", 1 << 14, 5, 50, 60, noise_bits=NOISE_BITS["default"]),
    "deep": CkksParams("deep", 1 << 15, 11, 52, 60, noise_bits=NOISE_BITS["deep"]),
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
    multiparty features enabled. Scaling is FIXEDAUTO (OpenFHE rescales before the next product); the
    data type is COMPLEX (so that noise flooding can fill every coefficient)."""
    params.validate()
    p = fhe.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(params.depth)
    p.SetScalingModSize(params.scale_bits)
    p.SetFirstModSize(params.first_mod_bits)
    p.SetScalingTechnique(fhe.FIXEDAUTO)
    p.SetKeySwitchTechnique(fhe.HYBRID)
    p.SetSecretKeyDist(fhe.UNIFORM_TERNARY)
    p.SetInteractiveBootCompressionLevel(fhe.COMPACT)
    p.SetCKKSDataType(fhe.COMPLEX)
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
