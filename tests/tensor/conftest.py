"""One 3-party collective (test preset) for every cipher-backend test: key generation is the
expensive part, so it runs once per session with the rotation keys of both plans used here."""

from __future__ import annotations

import numpy as np
import pytest

from rhode.mhe import LocalCollective, preset
from rhode.mhe.evaluator import Evaluator
from rhode.packing import PackingPlan
from rhode.tensor.cipher import CipherBackend

PARAMS = preset("test")
PACKED = PackingPlan(8, 16, PARAMS.slots)               # H = 8, 16 samples per ciphertext
NAIVE = PackingPlan(8, 1, PARAMS.slots, naive=True)      # one sample per ciphertext
TOL = 1e-4                                               # abs error for values in [-1, 1]


@pytest.fixture(scope="session")
def collective() -> LocalCollective:
    rotations = set(PACKED.rotation_indices()) | set(NAIVE.rotation_indices())
    return LocalCollective(PARAMS, 3, sorted(rotations), measure_bytes=False)


@pytest.fixture(scope="session")
def evaluator(collective) -> Evaluator:
    return Evaluator(collective.context)


@pytest.fixture
def backend(collective, evaluator) -> CipherBackend:
    return CipherBackend(evaluator, PACKED, collective.refresh)


@pytest.fixture
def naive_backend(collective, evaluator) -> CipherBackend:
    return CipherBackend(evaluator, NAIVE, collective.refresh)


@pytest.fixture
def reveal(collective):
    """Threshold-decrypt a cipher tensor (or pass numpy through) into its numpy value."""
    def _reveal(be: CipherBackend, t) -> np.ndarray:
        if isinstance(t, np.ndarray):
            return t
        if hasattr(t, "array"):
            return t.array
        return be.decode(t, collective.decrypt(be.ciphertexts(t)))
    return _reveal
