"""rhode.federated.limits: the CKKS encoder's input range in the global-statistics path, measured
with real OpenFHE, and check_magnitudes' verdict against what the encoder does with the vectors the
data holders encrypt (rhode.federated.dataprep.stats_vector, as rhode.federated.holder calls it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rhode.errors import DataError
from rhode.federated.config import RunConfig
from rhode.federated.dataprep import load_holders, magnitude_exponents, stat_values, stats_vector
from rhode.federated.limits import MARGIN, MAX_MAGNITUDE, check_magnitudes, encode_floor
from rhode.mhe import MheContext, preset

PRESETS = ("test", "default", "deep")


@pytest.fixture(scope="module")
def contexts() -> dict[str, MheContext]:
    return {name: MheContext(preset(name)) for name in PRESETS}


def encodes(ctx: MheContext, v: np.ndarray) -> bool:
    try:
        ctx.encode(v)
    except RuntimeError as exc:  # OpenFHE: "Encode(): Scaling factor too small"
        assert "Scaling factor too small" in str(exc)
        return False
    return True


@pytest.mark.parametrize("name, log2_floor", [("test", -48), ("default", -38), ("deep", -39)])
def test_encode_floor_is_the_encoders(contexts, name, log2_floor):
    floor = encode_floor(name)
    assert floor == 2.0 ** log2_floor
    ctx = contexts[name]
    assert encodes(ctx, np.array([1.000001 * floor])) and not encodes(ctx, np.array([floor]))
    assert encodes(ctx, np.array([0.0]))  # an exact zero vector is fine
    # a vector whose largest entry exceeds sqrt(2) x the floor encodes, whatever its other entries
    rng = np.random.default_rng(0)
    for size in (2, 7, 64, ctx.slots):
        v = rng.uniform(-1, 1, size) * 1e-3 * floor
        v[rng.integers(size)] = -1.42 * floor
        assert encodes(ctx, v)
    # large magnitudes are no problem for the encoder (the statistics are pre-scaled anyway)
    assert encodes(ctx, np.array([1e100, 0.5]))


def holder_vectors(values: list[np.ndarray]) -> list[np.ndarray]:
    """Both secure sums' vectors of every holder, as rhode.federated.holder makes them."""
    total = float(sum(len(v) for v in values))
    exps = [int(e) for e in np.max([magnitude_exponents(v) for v in values], axis=0)]
    first = [stats_vector(v, exps, total) for v in values]
    mean = np.sum([v.sum(axis=0) for v in values], axis=0) / total
    centred = [(v - mean) ** 2 for v in values]
    exps2 = [int(e) for e in np.max([magnitude_exponents(c) for c in centred], axis=0)]
    return first + [stats_vector(c, exps2, total) for c in centred]


def holders(spike: float, scale: float = 1.0, columns: int = 1, rows: int = 60, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = [scale * (1 + rng.normal(size=(rows, columns))) for _ in range(n)]
    if spike:
        values[1][10, 0] = spike
    return values


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("spike, scale, columns", [
    (0, 1, 1), (1e8, 1, 1), (1e10, 1, 1), (1e12, 1, 1), (1e14, 1, 1), (1e18, 1, 1), (1e20, 1, 1),
    (1e20, 1, 2), (0, 1e20, 1), (0, 1e-8, 1), (0, 1e-11, 1), (0, 1e-12, 1), (0, 1e-20, 1), (0, 1e-26, 2),
    (1e-10, 1e-22, 1),
])
def test_check_agrees_with_the_encoder(contexts, name, spike, scale, columns):
    values = holders(spike, scale, columns)
    if spike and columns == 2:  # a second column with ordinary values
        for v in values:
            v[:, 1] = np.linspace(-3, 5, len(v))
    vectors = holder_vectors(values)
    floor = encode_floor(name)
    ctx = contexts[name]
    tops = [float(np.max(np.abs(v))) for v in vectors]
    sure = [v for v, top in zip(vectors, tops, strict=True) if top > np.sqrt(2) * floor or top == 0]
    assert all(encodes(ctx, v) for v in sure)
    try:
        check_magnitudes([f"h{i}.csv" for i in range(3)], values, [f"c{j}" for j in range(columns)], name)
    except DataError:  # refused: some vector would not encode, or is within the margin of the floor
        assert any(0 < top < MARGIN * floor for top in tops)
    else:
        assert all(encodes(ctx, v) for v in vectors)


def test_an_outlier_names_its_file_column_and_value():
    values = holders(1e20)
    with pytest.raises(DataError) as e:
        check_magnitudes(["h0.csv", "h1.csv", "h2.csv"], values, ["demand"], "default")
    msg = str(e.value)
    assert msg.startswith("h1.csv: column 'demand' holds 1e+20, too large next to the other values")
    assert "h0.csv's pre-scaled column sums" in msg and "--preset default" in msg and "2^-38" in msg
    assert "fix or remove the value" in msg and "units does not help" in msg
    check_magnitudes(["h0.csv", "h1.csv", "h2.csv"], holders(1e8), ["demand"], "default")
    # the same outlier next to an ordinary column: the holders' other sums carry the vector
    two = holders(1e20, columns=2)
    check_magnitudes(["a", "b", "c"], two, ["demand", "temp"], "default")


def test_scale_free_but_tiny_units_need_rescaling():
    names = ["h0.csv", "h1.csv", "h2.csv"]
    check_magnitudes(names, holders(0, scale=1e90), ["x"], "default")
    check_magnitudes(names, holders(0, scale=1e-8), ["x"], "default")
    # values near 1e-20 that vary by as much: their squared deviations (1e-40) are too small
    with pytest.raises(DataError, match=r"^h0.csv: every column's values are too small.*column 'x': its "
                                        r"values differ from the mean by at most .*e-20; squared deviations "
                                        r"below 1e-12 are not scaled up.*rescale the columns \(change"):
        check_magnitudes(names, holders(0, scale=1e-20), ["x"], "default")
    # values below 1e-22: already the column sums are too small
    with pytest.raises(DataError, match=r"^h0.csv: every column's values are too small.*column 'x': largest "
                                        r"value .*e-2\d; magnitudes below 1e-12 are not scaled up") as e:
        check_magnitudes(names, holders(0, scale=1e-26), ["x"], "default")
    factor = float(str(e.value).rsplit("multiply them by ", 1)[1].rstrip(")"))
    check_magnitudes(names, [factor * v for v in holders(0, scale=1e-26)], ["x"], "default")  # as advised
    # values that barely vary around their mean: the second sum fails
    flat = [np.full((60, 1), 5.0) + 1e-14 * np.random.default_rng(i).normal(size=(60, 1)) for i in range(3)]
    with pytest.raises(DataError, match="differ from the mean by at most"):
        check_magnitudes(names, flat, ["x"], "default")


def test_magnitudes_beyond_the_float_range_of_the_squares():
    values = holders(0)
    values[2][7, 0] = -2 * MAX_MAGNITUDE
    with pytest.raises(DataError, match=r"^h2.csv: column 'x' holds -2e\+100; .* up to 1e\+100"):
        check_magnitudes(["h0.csv", "h1.csv", "h2.csv"], values, ["x"], "test")


def test_on_load_holders(tmp_path: Path):
    """Where the run calls it: the holders' training parts as load_holders makes them (differenced)."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        rows = [f"2024-01-{1 + r // 24:02d}T{r % 24:02d}:00,{rng.normal():.4f}" for r in range(60)]
        if i == 1:
            rows[10] = rows[10].split(",")[0] + ",1e20"
        files.append(tmp_path / f"h{i}.csv")
        files[-1].write_text("date,demand\n" + "\n".join(rows) + "\n")
    cfg = RunConfig(data=tuple(map(str, files)), target="demand", timesteps=2, preset="default")
    with pytest.raises(DataError, match=r"h1.csv: column 'demand(_diff)?' holds -?1e\+20"):
        load_holders(cfg)  # load_holders calls check_magnitudes on the holders' training parts
    files[1].write_text(files[1].read_text().replace("1e20", "1e8"))
    held = load_holders(cfg)
    columns = held[0].train.stat_columns
    assert columns == ("demand", "demand_diff")
    check_magnitudes(list(cfg.data), [stat_values(h.train) for h in held], columns, cfg.preset)


@pytest.mark.parametrize("dataset, parties, scheme", [("electricity", 3, "iid"), ("stocks", 4, "blocks"),
                                                      ("electricity", 16, "skew")])
def test_the_bundled_datasets_pass(dataset, parties, scheme):
    held = load_holders(RunConfig(dataset=dataset, parties=parties, partition=scheme))
    for name in PRESETS:
        check_magnitudes([h.train.source for h in held], [stat_values(h.train) for h in held],
                         held[0].train.stat_columns, name)
