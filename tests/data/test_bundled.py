"""The bundled datasets load offline, have a time column and stay small."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from rhode.data import BUNDLED, load_bundled
from rhode.errors import DataError


@pytest.mark.parametrize("name, rows, d, target", [("electricity", 4032, 1, "demand_mw"),
                                                     ("stocks", 3017, 5, "close")])
def test_bundled(name, rows, d, target):
    s = load_bundled(name)
    assert (s.n_rows, s.n_features, s.target_name) == (rows, d, target)
    assert s.time_column is not None and np.all(np.diff(s.time) > np.timedelta64(0, "s"))
    assert s.target_is_feature and s.source == name
    assert np.all(np.isfinite(s.values)) and np.all(s.target > 0)
    size = (resources.files("rhode.data") / "bundled" / BUNDLED[name].file).stat().st_size
    assert size < 300_000


def test_electricity_is_half_hourly():
    s = load_bundled("electricity")
    assert np.all(np.diff(s.time) == np.timedelta64(30, "m"))
    assert s.target[0] == 22262.0 and str(s.time[0]) == "2000-06-05T00:00:00"


def test_unknown_bundled():
    with pytest.raises(DataError, match=r"unknown bundled dataset 'weather'; choose one of \['electricity'"):
        load_bundled("weather")
