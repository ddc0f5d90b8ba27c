"""A querier: owns its own CKKS key pair in the collective context and decrypts results that the data
holders switched to its key."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openfhe as fhe

from rhode.errors import ProtocolError
from rhode.mhe.context import Ciphertext, MheContext


class Querier:
    """Key pair of a querier (not a data holder). Its secret never leaves the object.

    Attributes:
        context: the shared public context.
        public_key: the querier's own public key (sent to the data holders for key switching).
    """

    __slots__ = ("context", "public_key", "_secret")

    def __init__(self, context: MheContext) -> None:
        kp = context.cc.KeyGen()
        self.context = context
        self.public_key: fhe.PublicKey = kp.publicKey
        self._secret = kp.secretKey

    def __repr__(self) -> str:
        return f"Querier(preset={self.context.params.name!r})"

    def __reduce__(self):
        raise TypeError("a Querier holds a secret key and cannot be pickled")

    def decrypt(self, cts: Sequence[Ciphertext], length: int | None = None) -> list[np.ndarray]:
        """Decrypt ciphertexts switched to this querier's key; real parts, ``length`` values each."""
        length = self.context.slots if length is None else int(length)
        if not 1 <= length <= self.context.slots:
            raise ProtocolError(f"length must be between 1 and {self.context.slots}, got {length}")
        tag = self.public_key.GetKeyTag()
        out = []
        for i, ct in enumerate(cts):
            if ct.GetKeyTag() != tag:
                raise ProtocolError(f"ciphertext {i} is not under this querier's key")
            try:
                pt = self.context.cc.Decrypt(self._secret, ct)
            except RuntimeError:
                raise ProtocolError(f"ciphertext {i} does not decrypt under this querier's key") from None
            pt.SetLength(length)
            out.append(np.asarray(pt.GetRealPackedValue(), dtype=np.float64))
        return out
