"""Shared collectives for the mhe tests (real OpenFHE ciphertexts, insecure `test` preset)."""

from __future__ import annotations

import numpy as np
import pytest
from _mhe_util import ROTATIONS

from rhode.mhe import LocalCollective, preset


@pytest.fixture(scope="session")
def params():
    return preset("test")


@pytest.fixture(scope="session")
def collectives(params):
    """One collective per N in {2, 3, 5}, built once."""
    return {n: LocalCollective(params, n, rotations=ROTATIONS) for n in (2, 3, 5)}


@pytest.fixture(scope="session")
def col3(collectives):
    return collectives[3]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

