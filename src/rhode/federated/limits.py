"""What the encrypted global statistics can add: the input range of the CKKS encoder, checked on the
plaintext before any key is made (issue 14).

For the normalization statistics every data holder encrypts two vectors (:mod:`rhode.federated.holder`,
``joint_key`` and ``stats``; :func:`rhode.federated.dataprep.stats_vector`): per column, its sum of the
values, then of the squares centred on the revealed global mean, pre-scaled by 2^-e_j and divided by
the total row count N. e_j is the largest of the holders' ceil(log2 max|x_j|), never below -39
(:func:`rhode.federated.dataprep.magnitude_exponents` bounds the peak below by 1e-12). Every entry is
then in [-1, 1], so no magnitude is too large for the encoder: a 1e100 cell encodes.

What fails is a vector whose entries are all tiny: OpenFHE's encoder refuses it ("Encode(): Scaling
factor too small"). Measured with real OpenFHE (``tests/federated/test_limits.py``): a vector encodes
when its largest entry exceeds ``slots / 2^(scale_bits + 1)`` (:func:`encode_floor`): a single entry
encodes iff it exceeds it, any vector whose largest entry exceeds sqrt(2) times it encodes (the
coefficients' mean square is at least a single entry's):
2^-48 ~ 3.6e-15 for the ``test`` preset, 2^-38 ~ 3.6e-12 for ``default``, 2^-39 ~ 1.8e-12 for
``deep``. A holder's entries are that small when, in every column, its sum is tiny next to the
column's largest magnitude among all holders (a cell of 1e20 among values near 1: the other holders'
pre-scaled sums are ~1e-22), or when the values are so small that the pre-scaling, which stops at
2^39, cannot bring them up: below ~1e-22 for the column sums, and, for the squared deviations, values
that vary by less than ~1e-11 (default preset; squares ~1e-22) in every column. The first is
scale-free (changing units does not help; the outlier must go), the second is fixed by changing
units. Magnitudes above 1e100 are refused too: their squares and sums must stay
finite in float64.

This module does not import the data preparation (which calls it): it repeats its arithmetic, and the
tests check both against each other and against the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rhode.errors import DataError

#: largest magnitude a value may have (its squares, summed over many rows, must stay finite)
MAX_MAGNITUDE = 1e100
#: the peak a column's pre-scaling assumes at least (as rhode.federated.dataprep.magnitude_exponents)
_MIN_PEAK = 1e-12
_SCALED_DOWN_TO = 2.0 ** math.ceil(math.log2(_MIN_PEAK))  # the smallest 2^e_j, 2^-39
#: a vector's largest entry must be this many times the encoder's floor: more than sqrt(2) (what any
#: vector needs), and a margin as the second sum is centred on the revealed mean, which differs from
#: the exact one by the decryption noise
MARGIN = 2.0


def encode_floor(preset_name: str) -> float:
    """What the largest entry of a vector must exceed for the CKKS encoder of the preset:
    ``slots / 2^(scale_bits + 1)`` (measured: a vector of one entry encodes iff it exceeds it; any
    vector whose largest entry exceeds sqrt(2) times it encodes)."""
    from rhode.mhe.params import preset  # deferred: loads OpenFHE

    p = preset(preset_name)
    return p.slots / 2.0 ** (p.scale_bits + 1)


def _exponents(values: Sequence[np.ndarray]) -> np.ndarray:
    """The public pre-scaling exponents: per column, the largest of ceil(log2 max|x|) over holders."""
    peaks = np.max([np.max(np.abs(v), axis=0) for v in values], axis=0)
    return np.ceil(np.log2(np.maximum(peaks, _MIN_PEAK))).astype(int)


def _vectors(values: Sequence[np.ndarray], total: float) -> list[np.ndarray]:
    """Each holder's encrypted vector of one secure sum (pre-scaled column sums / total rows)."""
    scale = np.exp2(-_exponents(values).astype(float))
    return [(v * scale).sum(axis=0) / total for v in values]


def _fmt_pow2(x: float) -> str:
    return f"2^{round(math.log2(x))} (~{x:.1e})"


def _check_range(sources: Sequence[str], values: Sequence[np.ndarray], columns: Sequence[str]) -> None:
    for src, v in zip(sources, values, strict=True):
        bad = ~np.isfinite(v) | (np.abs(v) > MAX_MAGNITUDE)
        if bad.any():
            row, col = (int(k) for k in np.argwhere(bad)[0])
            raise DataError(f"{src}: column '{columns[col]}' holds {v[row, col]:.6g}; rhode's global "
                            f"statistics take magnitudes up to {MAX_MAGNITUDE:.0e} (their squares must stay "
                            "finite): rescale the column (change its units) or fix the value")


def _tops(basis: Sequence[np.ndarray]) -> list[float]:
    """Per holder, the largest entry of its vector of the secure sum over ``basis``."""
    total = float(sum(len(v) for v in basis))
    return [float(np.max(np.abs(vec))) for vec in _vectors(basis, total)]


def _too_small(sources, values, basis, columns, preset_name: str, what: str, rescale: list[float]) -> None:
    """DataError for the first holder whose vector of the secure sum over ``basis`` (per holder: the
    values, or their centred squares) the encoder would refuse; ``values`` name the cell to fix,
    ``rescale`` is per holder the factor its values would need were they too small."""
    floor = encode_floor(preset_name)
    total = float(sum(len(v) for v in basis))
    for h, (src, vec) in enumerate(zip(sources, _vectors(basis, total), strict=True)):
        top = float(np.max(np.abs(vec)))
        if top == 0.0 or top >= MARGIN * floor:
            continue
        j = int(np.argmax(np.abs(vec)))  # the holder's column that comes closest
        peaks = [float(np.max(np.abs(v[:, j]))) for v in basis]
        g = int(np.argmax(peaks))
        biggest = values[g][int(np.argmax(np.abs(basis[g][:, j]))), j]
        supports = (f"{src}'s pre-scaled {what} come to at most {top:.1e} in every column, below what the "
                    f"encoder of --preset {preset_name} takes: {_fmt_pow2(floor)} of a column's largest "
                    "magnitude")
        if peaks[g] < _SCALED_DOWN_TO:
            size = (f"largest value {biggest:.3g}; magnitudes" if basis is values else "its values differ "
                    f"from the mean by at most {math.sqrt(peaks[g]):.3g}; squared deviations")
            raise DataError(f"{src}: every column's values are too small or vary too little for the "
                            f"encrypted global statistics (column '{columns[j]}': {size} below "
                            f"{_MIN_PEAK:.0e} are not scaled up; {supports}): rescale the columns (change "
                            f"their units, e.g. multiply them by 1e{math.ceil(math.log10(rescale[h])) + 1})")
        raise DataError(f"{sources[g]}: column '{columns[j]}' holds {biggest:.6g}, too large next to the "
                        f"other values for the encrypted global statistics ({supports}); fix or remove the "
                        "value if it is an outlier (changing the column's units does not help: the "
                        "statistics are scaled to each column's largest magnitude)")


def check_magnitudes(sources: Sequence[str], values: Sequence[np.ndarray], columns: Sequence[str],
                     preset_name: str) -> None:
    """Raise :class:`DataError` unless the global normalization statistics of these data holders can
    be encrypted under ``preset_name``.

    Args:
        sources: one name per data holder for messages (its CSV path).
        values: per data holder, the (rows, columns) values the statistics cover
            (:func:`rhode.federated.dataprep.stat_values` of its training part).
        columns: the column names (``stat_columns``).
        preset_name: the CKKS preset of the run (``--preset``).

    Refuses a value that is not finite or above :data:`MAX_MAGNITUDE` in magnitude, and any holder
    whose vector of either secure sum (column sums, then squares centred on the global mean) the
    encoder would refuse (all its entries below :data:`MARGIN` times :func:`encode_floor`); the message
    names the file, the column and its largest value, what the preset supports and what to do.
    """
    values = [np.asarray(v, dtype=np.float64).reshape(len(v), len(columns)) for v in values]
    if len(sources) != len(values) or not values:
        raise ValueError("check_magnitudes needs one source name per data holder's values")
    _check_range(sources, values, columns)
    mean = np.sum([v.sum(axis=0) for v in values], axis=0) / sum(len(v) for v in values)
    centred = [(v - mean) ** 2 for v in values]
    # were the values too small: the factor each holder's would need (the column sums grow with it,
    # the squares with its square)
    need = MARGIN * encode_floor(preset_name)
    rescale = [max(need / a if a else 1.0, math.sqrt(need / b) if b else 1.0)
               for a, b in zip(_tops(values), _tops(centred), strict=True)]
    _too_small(sources, values, values, columns, preset_name, "column sums", rescale)
    _too_small(sources, values, centred, columns, preset_name, "sums of squared deviations from the mean",
               rescale)

__all__ = ["MARGIN", "MAX_MAGNITUDE", "check_magnitudes", "encode_floor"]
