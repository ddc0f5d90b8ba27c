"""The public, secret-free side of a threshold-CKKS deployment: one per process.

An :class:`MheContext` wraps the OpenFHE CryptoContext built from a :class:`CkksParams`, the joint
public key once the parties have made it, and the bookkeeping of which evaluation keys exist. The
evaluation keys themselves live in OpenFHE's per-process static maps, keyed by the joint key tag, so
every party, aggregator step and evaluator in one process uses the same single copy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import openfhe as fhe

from rhode.errors import DataError, ProtocolError
from rhode.mhe.params import CkksParams, make_context

Ciphertext = fhe.Ciphertext


class MheContext:
    """CryptoContext + joint public key + the set of rotations that have joint keys.

    Attributes:
        params: the parameters the CryptoContext was built from.
        cc: the OpenFHE CryptoContext (used only inside :mod:`rhode.mhe`).
        public_key: the joint public key (``None`` until collective key generation).
        slots: number of CKKS slots (ring_dim / 2).
        rotation_indices: rotation offsets that have joint rotation keys.
        has_relin_key: whether the joint relinearization key is installed.
    """

    def __init__(self, params: CkksParams, cc: fhe.CryptoContext | None = None) -> None:
        self.params = params.validate()
        self.cc = cc if cc is not None else make_context(params)
        self.public_key: fhe.PublicKey | None = None
        self.slots: int = params.slots
        self.rotation_indices: frozenset[int] = frozenset()
        self.has_relin_key: bool = False
        # exact zero ciphertexts on this context's own ring parameters, by (level, scale degree):
        # see rhode.mhe.serial.native (deserialized ciphertexts are re-based on them)
        self._native_zeros: dict[tuple[int, int], fhe.Ciphertext] = {}

    def __repr__(self) -> str:
        return (f"MheContext(preset={self.params.name!r}, ring_dim={self.params.ring_dim}, "
                f"depth={self.params.depth}, rotations={len(self.rotation_indices)}, "
                f"public_key={'set' if self.public_key is not None else 'unset'})")

    @property
    def key_tag(self) -> str:
        """Tag of the joint key: every ciphertext and evaluation key under it carries this tag."""
        return self.require_public_key().GetKeyTag()

    def require_public_key(self) -> fhe.PublicKey:
        """The joint public key, or a :class:`ProtocolError` if key generation has not run."""
        if self.public_key is None:
            raise ProtocolError("no joint public key yet: run collective key generation first")
        return self.public_key

    def normalize_rotations(self, rotations: Iterable[int]) -> frozenset[int]:
        """Rotation offsets reduced to ``(-slots, slots)`` (0 dropped); rejects non-integers."""
        out = set()
        for r in rotations:
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
                raise DataError(f"rotation offsets must be integers, got {r!r}")
            r = int(r)
            if abs(r) >= self.slots:
                r = r % self.slots
            if r != 0:
                out.add(r)
        return frozenset(out)

    def missing_rotations(self, rotations: Iterable[int]) -> frozenset[int]:
        """Requested rotations (normalized) that have no joint key yet."""
        return self.normalize_rotations(rotations) - self.rotation_indices

    def encode(self, values: np.ndarray) -> fhe.Plaintext:
        """CKKS plaintext of a real vector of length <= slots (zero-padded), at level 0."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0 or v.size > self.slots:
            raise DataError(f"a ciphertext holds 1 to {self.slots} values, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise DataError("values to encrypt contain NaN or infinity")
        return self.cc.MakeCKKSPackedPlaintext(v, 1, 0)

    def encrypt(self, values: np.ndarray, public_key: fhe.PublicKey | None = None) -> Ciphertext:
        """Encrypt a real vector (length <= slots) at level 0 under the joint (or given) public key."""
        pk = public_key if public_key is not None else self.require_public_key()
        return self.cc.Encrypt(pk, self.encode(values))

    @staticmethod
    def levels_used(ct: Ciphertext) -> int:
        """Levels ``ct`` has consumed, counting a pending rescale (FIXEDAUTO defers it to the next
        product): ``level + noise_scale_degree - 1``. A refresh needs this <= ``usable_levels``."""
        return ct.GetLevel() + ct.GetNoiseScaleDeg() - 1

    def towers(self, ct: Ciphertext) -> int:
        """RNS towers left in ``ct`` after its pending rescale (refresh needs at least 3)."""
        return self.params.depth + 1 - self.levels_used(ct)
