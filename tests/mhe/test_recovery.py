"""t-out-of-N recovery of a secret share from Shamir pieces (real OpenFHE keys, `test` preset, N = 5,
t = 3): any t pieces rebuild the share exactly (its decryption shares fuse with the others' to the
message), t - 1 do not, and t - 1 holders' shares and pieces together decrypt nothing.

Tolerances are the flooded decryption's (test_threshold.py): TOL = 1e-5 for a fusion that must
recover values in [-1, 1], FAIL = 1e-1 for one that must not.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rhode.errors import ProtocolError, SerializationError
from rhode.mhe.protocols import ProtocolKind, decryption, fold
from rhode.mhe.protocols.recovery import Piece, check_threshold, lagrange_at_zero, rebuild, split

TOL, FAIL = 1e-5, 1e-1
N, T = 5, 3


def _fuse(col, parties, ct):
    shares = [decryption.gen_share(p, [ct], flood=True) for p in parties]
    try:
        out = decryption.finalize(col.context, fold(col.context, decryption.aggregate, shares,
                                                    ProtocolKind.DECRYPTION), None)[0]
    except ProtocolError:
        return None
    return out


@pytest.fixture(scope="module")
def dealt(collectives):
    col = collectives[5]
    return col, {p.index: split(p, N, T) for p in col.parties}


def test_dropout_any_t_pieces_rebuild_the_share(dealt, rng):
    col, pieces = dealt
    x = rng.uniform(-1, 1, col.context.slots)
    ct = col.encrypt(x)
    dropped = 2
    for helpers in itertools.combinations([i for i in range(N) if i != dropped], T):
        rebuilder = col.parties[helpers[0]]
        bytes_ = [pieces[dropped][j].to_bytes(col.context) for j in helpers]  # as they travel
        share = rebuild(rebuilder, dropped, [Piece.from_bytes(col.context, b) for b in bytes_], T)
        assert share.index == dropped
        others = [p for p in col.parties if p.index != dropped]
        got = _fuse(col, [*others, share], ct)
        assert got is not None and float(np.max(np.abs(got - x))) <= TOL, helpers


def test_dropout_t_minus_one_holders_learn_nothing(dealt, rng):
    """t - 1 = 2 holders' own shares plus every piece they hold of the 3 others': no interpolation
    from t - 1 points rebuilds a share, and their decryption shares do not fuse to the message."""
    col, pieces = dealt
    x = rng.uniform(-1, 1, col.context.slots)
    ct = col.encrypt(x)
    for coalition in itertools.combinations(range(N), T - 1):
        held = [pieces[d][j] for d in range(N) if d not in coalition for j in coalition]
        for d in (d for d in range(N) if d not in coalition):
            with pytest.raises(ProtocolError, match="needs 3 distinct pieces"):
                rebuild(col.parties[coalition[0]], d, [p for p in held if p.dealer == d], T)
        # the best a coalition can do with t - 1 points: interpolate them as if the degree were t - 2
        guesses = [rebuild(col.parties[coalition[0]], d, [p for p in held if p.dealer == d], T - 1)
                   for d in range(N) if d not in coalition]
        got = _fuse(col, [col.parties[i] for i in coalition] + guesses, ct)
        assert got is None or float(np.max(np.abs(got - x))) >= FAIL, coalition


def test_dropout_pieces_of_one_holder_look_uniform(dealt):
    """A single piece is independent of the share: its residues spread over [0, q) (mean q/2 within
    5 standard errors of a uniform distribution's, 8192 residues per prime)."""
    col, pieces = dealt
    p = pieces[0][1]
    for q, tower in zip(p.moduli, p.towers, strict=True):
        mean = float(np.mean(tower.astype(np.float64))) / q
        assert abs(mean - 0.5) <= 5 * (1 / np.sqrt(12 * len(tower)))


def test_dropout_threshold_must_be_a_strict_majority():
    assert check_threshold(3, 4) == 3 and check_threshold(4, 4) == 4 and check_threshold(2, 3) == 2
    for t, n in ((2, 4), (1, 3), (5, 4), (0, 2)):
        with pytest.raises(ProtocolError, match="more than half"):
            check_threshold(t, n)


def test_dropout_lagrange_coefficients_interpolate_constants():
    q = 1152921504606830593
    for xs in ([1, 2, 3], [2, 4, 5], [1, 3, 4, 5]):
        assert sum(lagrange_at_zero(xs, q)) % q == 1


def test_dropout_piece_bytes_are_checked(dealt):
    col, pieces = dealt
    b = bytearray(pieces[1][3].to_bytes(col.context))
    b[-1] ^= 1
    with pytest.raises(SerializationError):
        Piece.from_bytes(col.context, bytes(b))
    assert repr(pieces[1][3]) == "Piece(dealer=1, recipient=3)"
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(pieces[1][3])
