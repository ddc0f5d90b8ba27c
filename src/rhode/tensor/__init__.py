"""One array interface, two backends: numpy (plaintext) and packed ciphertexts (cipher)."""

from rhode.tensor.base import Backend, Tensor
from rhode.tensor.numpy_backend import NumpyBackend
from rhode.tensor.poly import ChebyshevPoly

__all__ = ["Backend", "ChebyshevPoly", "NumpyBackend", "Tensor"]
