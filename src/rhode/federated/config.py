"""Run configuration of a federated training: data, model, training, cryptography.

A :class:`RunConfig` is plain data (TOML- and JSON-serializable), validated before any key is made,
and stored with every checkpoint so that a resume with other parameters is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli

from rhode.errors import ParameterError
from rhode.nn.config import ModelConfig, TrainConfig
from rhode.packing.plan import next_pow2

CELLS = ("rnn", "gru", "lstm")
CLIPS = ("none", "poly", "tanh", "abs")
PARTITIONS = ("iid", "blocks", "skew")

# What each RunConfig field is called on the command line (messages name the option as the user typed
# it; the CLI builds its options from this table). Fields without a flag are configuration keys only.
FLAGS: dict[str, str] = {
    "data": "--data", "dataset": "--dataset", "target": "--target", "features": "--features",
    "parties": "--parties", "partition": "--partition", "cell": "--cell", "hidden": "--hidden",
    "timesteps": "--timesteps", "horizon": "--horizon", "difference": "--difference", "batch": "--batch",
    "learning_rate": "--learning-rate", "local_steps": "--local-steps", "global_iterations": "--iterations",
    "momentum": "--momentum", "nesterov": "--nesterov", "lr_decay": "--lr-decay",
    "lr_decay_every": "--lr-decay-every", "clip": "--clip", "clip_value": "--clip-value",
    "preset": "--preset", "seed": "--seed", "test_fraction": "--test-fraction",
    "max_test_windows": "--max-test-windows", "query_batches": "--query-batches", "workers": "--workers",
    "threshold": "--threshold",
}


def option_name(name: str) -> str:
    """How a user names RunConfig field ``name``: its flag (``--iterations``), else its config key."""
    return FLAGS.get(name, f"configuration key {name}")


#: the smallest --test-fraction (and 1 minus the largest): below it the row counts it implies overflow
MIN_FRACTION = 1e-6


@dataclass(frozen=True)
class RunConfig:
    """Everything that fixes a run. Field names are the CLI flags (``--hidden`` -> ``hidden``) except
    ``--iterations`` -> ``global_iterations``: :data:`FLAGS`.

    Data: either ``data`` (one CSV per data holder) or ``dataset`` (a bundled dataset split into
    ``parties`` partitions with ``partition``). ``batch = 0`` (the default) means "auto": the run
    resolves it with :func:`resolve_batch` once the data and the preset are known.

    Training defaults (differencing, heavy-ball momentum 0.7, learning rate 1.2, 2 local steps, batch
    auto, 8 global iterations): the recipe bench/recipe.py chose on the plaintext mirror, docs/recipe.md.
    """

    data: tuple[str, ...] = ()
    dataset: str | None = None
    target: str | None = None
    features: tuple[str, ...] | None = None
    parties: int = 3
    partition: str = "iid"
    cell: str = "rnn"
    hidden: int = 8
    timesteps: int = 3
    horizon: int = 1
    difference: bool = True
    batch: int = 0
    learning_rate: float = 1.2
    local_steps: int = 2
    global_iterations: int = 8
    momentum: float = 0.7
    nesterov: bool = False
    lr_decay: float = 1.0
    lr_decay_every: int = 1
    clip: str = "tanh"
    clip_value: float = 1.0
    tanh_interval: float = 2.5
    tanh_degree: int = 7
    preset: str = "default"
    seed: int = 0
    test_fraction: float = 0.2
    max_test_windows: int = 128
    query_batches: int = 8
    max_rows: int | None = None
    workers: int = 1
    threshold: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Raise :class:`ParameterError` naming the option and what to change."""
        def bad(option: str, why: str) -> ParameterError:
            return ParameterError(f"invalid value for {option}: {why}")

        if not self.data and not self.dataset:
            raise bad("--data", "give one CSV file per data holder, or a bundled --dataset")
        if self.data and self.dataset:
            raise bad("--data/--dataset", "give either CSV files or a bundled dataset, not both")
        if self.data and len(self.data) < 2:
            raise bad("--data", "federated training needs at least 2 data holders (2 CSV files)")
        if self.data and len(self.data) > 16:
            raise bad("--data", f"{len(self.data)} CSV files, one per data holder; rhode supports 2 to 16")
        if not self.data and not (_is_int(self.parties) and 2 <= self.parties <= 16):
            raise bad("--parties", f"{self.parties!r} data holders; rhode supports 2 to 16")
        if self.cell not in CELLS:
            raise bad("--cell", f"{self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.clip not in CLIPS:
            raise bad("--clip", f"{self.clip!r}; choose one of {', '.join(CLIPS)}")
        if self.partition not in PARTITIONS:
            raise bad("--partition", f"{self.partition!r}; choose one of {', '.join(PARTITIONS)}")
        for name, lo, hi in (("hidden", 1, 64), ("timesteps", 1, 256), ("horizon", 1, 10_000),
                             ("batch", 0, 4096), ("local_steps", 1, 1000),
                             ("global_iterations", 1, 10_000), ("max_test_windows", 1, 1_000_000),
                             ("query_batches", 0, 1_000_000),
                             ("lr_decay_every", 1, 10_000)):
            value = getattr(self, name)
            if not _is_int(value) or not lo <= value <= hi:
                raise bad(option_name(name), f"{value!r}; expected an integer between {lo} and {hi}"
                          + (" (0: auto, from the slot capacity)" if name == "batch" else ""))
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate <= 10):
            raise bad("--learning-rate", f"{self.learning_rate!r}; expected a number in (0, 10]")
        self._validate_momentum(bad)
        if not (isinstance(self.clip_value, (int, float)) and 0 < self.clip_value <= 100):
            raise bad("--clip-value", f"{self.clip_value!r}; expected a number in (0, 100]")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 0 <= self.workers <= 16:
            raise bad("--workers", f"{self.workers!r}; expected 0 (one per data holder, at most two "
                      "per CPU core) or 1 to 16 processes")
        if not isinstance(self.difference, bool):
            raise bad("--difference", f"{self.difference!r}; expected true or false")
        if not (_is_number(self.test_fraction) and MIN_FRACTION <= self.test_fraction <= 1 - MIN_FRACTION):
            raise bad("--test-fraction", f"{self.test_fraction!r}; expected a number in (0, 1), "
                      f"at least {MIN_FRACTION:g} from either end")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise bad("--seed", f"{self.seed!r}; expected an integer >= 0")
        self._validate_threshold(bad)
        from rhode.mhe.params import PRESETS  # deferred: `rhode --help` does not load OpenFHE

        if self.preset not in PRESETS:
            raise bad("--preset", f"{self.preset!r}; choose one of {', '.join(PRESETS)}")
        return self

    def _validate_threshold(self, bad) -> None:
        n, t = self.n_parties, self.threshold
        if not _is_int(t) or t < 0:
            raise bad("--threshold", f"{t!r}; expected an integer (0: all {n} data holders)")
        if t and not n / 2 < t <= n:
            raise bad("--threshold", f"{t} of {n} data holders; it must be more than half of them and at "
                      f"most {n} (with t <= N/2 two disjoint groups could each rebuild shares and decrypt)")

    @property
    def key_threshold(self) -> int:
        """How many data holders must be online for the key to work (t; N without ``--threshold``)."""
        return self.threshold or self.n_parties

    def _validate_momentum(self, bad) -> None:
        number = _is_number
        if not (number(self.momentum) and 0 <= self.momentum < 1):
            raise bad("--momentum", f"{self.momentum!r}; expected a number in [0, 1) (0: plain SGD)")
        if not isinstance(self.nesterov, bool):
            raise bad("--nesterov", f"{self.nesterov!r}; expected true or false")
        if self.nesterov and self.momentum == 0:
            raise bad("--nesterov", "Nesterov momentum needs --momentum > 0")
        if not (number(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise bad("--lr-decay", f"{self.lr_decay!r}; expected a number in (0, 1] (1: constant "
                      "learning rate)")

    @property
    def n_parties(self) -> int:
        return len(self.data) if self.data else self.parties

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = list(self.data)
        d["features"] = list(self.features) if self.features is not None else None
        return d

    def fingerprint(self) -> str:
        """Hash of every field that changes what a run computes (resume must match it)."""
        d = self.to_dict()
        for volatile in ("global_iterations", "max_test_windows", "query_batches", "workers", "extra"):
            d.pop(volatile, None)
        if not d.get("threshold"):
            d.pop("threshold", None)  # N-out-of-N: the fingerprint of runs made before --threshold
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the configuration") -> RunConfig:
        """Build from a (possibly sectioned) dict whose keys are fields or CLI flag names
        (:func:`flatten`); ParameterError naming an unknown key or a value of the wrong type."""
        flat = flatten(d, where)
        for key in ("data", "features"):
            if isinstance(flat.get(key), list):
                flat[key] = tuple(flat[key])
        try:
            return cls(**flat).validate()
        except TypeError as exc:
            raise ParameterError(f"malformed configuration: {exc}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_strings(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


# annotation of a RunConfig field (without "| None") -> (check, what it must be)
_KINDS: dict[str, tuple[Any, str]] = {
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[str, ...]": (_is_strings, "a list of strings"),
    "dict[str, Any]": (lambda v: isinstance(v, dict), "a table"),
}
_EXAMPLES = {"data": 'a list of CSV files, one per data holder, e.g. data = ["a.csv", "b.csv"]',
             "features": 'a list of column names, e.g. features = ["temp", "hour"]'}


def _keys() -> dict[str, str]:
    """Accepted key (dashes as underscores) -> field: every field name and every flag's name."""
    keys = {f.name: f.name for f in dataclasses.fields(RunConfig)}
    keys.update({flag[2:].replace("-", "_"): name for name, flag in FLAGS.items()})
    return keys


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, tuple) else json.dumps(list(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    for t, what in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    ((list, tuple), "a list"), (dict, "a table")):
        if isinstance(value, t):
            return what
    return type(value).__name__


def flatten(d: dict[str, Any], where: str = "the configuration") -> dict[str, Any]:
    """``{field: value}`` from a dict as a TOML file gives it: TOML sections (``[model]``, ``[train]``)
    are flattened, a key is a field name or a flag's name (``iterations`` = ``global_iterations``,
    ``learning-rate`` = ``learning_rate``). Strings are never taken for lists: ``data = "a.csv"`` is
    refused (``data = ["a.csv", "b.csv"]``). ParameterError naming ``where`` (``--config FILE``) and the
    key as written, for an unknown key, a key given twice or a value of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    keys = _keys()
    flat: dict[str, Any] = {}
    written: dict[str, str] = {}
    items = [(k, v) for k, v in d.items() if not isinstance(v, dict) or k == "extra"]
    items += [(f"{k}.{k2}", v2) for k, v in d.items() if isinstance(v, dict) and k != "extra"
              for k2, v2 in v.items()]
    for key, value in items:
        name = keys.get(key.rsplit(".", 1)[-1].replace("-", "_"))
        if name is None:
            raise ParameterError(f"{where}: {_unknown(key.rsplit('.', 1)[-1], keys)}")
        if name in flat:
            raise ParameterError(f"{where}: {written[name]} and {key} set the same option; keep one")
        kind = str(fields[name].type).replace(" | None", "")
        check, what = _KINDS.get(kind, (lambda v: True, ""))
        if not (check(value) or (value is None and fields[name].type != kind)):
            raise ParameterError(f"invalid value for {option_name(name)} ({where} sets {key} = "
                                 f"{_shown(value)}): {_kind_of(value)}, expected {_EXAMPLES.get(name, what)}")
        flat[name], written[name] = value, key
    return flat


def _unknown(key: str, keys: dict[str, str]) -> str:
    """An unknown key, with the closest valid one (or every valid one), as the CLI spells them."""
    valid = sorted({FLAGS[n][2:] if n in FLAGS else n.replace("_", "-") for n in set(keys.values())})
    close = difflib.get_close_matches(key.replace("_", "-"), [k.replace("_", "-") for k in keys], n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; valid keys: {', '.join(valid)}"
    return f"unknown key {key}{hint}"


def model_configs(cfg: RunConfig, n_features: int) -> tuple[ModelConfig, ModelConfig, TrainConfig]:
    """(polynomial model = mirror and encrypted run, exact model = baseline, training config)."""
    # tanh: degree 7 on [-2.5, 2.5] costs the same 3 levels as degree 5 in the power-basis evaluation;
    # how close the mirror trains to exact tanh is in docs/accuracy.md
    if cfg.batch == 0:
        raise ParameterError("batch 0 means auto: resolve it first (rhode.federated.config.resolve_batch)")
    act = {"tanh_interval": cfg.tanh_interval, "tanh_degree": cfg.tanh_degree}
    poly = ModelConfig(cfg.cell, n_features, cfg.hidden, 1, activation="poly", **act).validate()
    exact = ModelConfig(cfg.cell, n_features, cfg.hidden, 1, activation="exact", **act).validate()
    train = TrainConfig(cfg.learning_rate, cfg.batch, cfg.local_steps, clip=cfg.clip,
                        clip_value=cfg.clip_value, clip_bound=2.0 * cfg.clip_value,
                        momentum=float(cfg.momentum), nesterov=cfg.nesterov,
                        lr_decay=float(cfg.lr_decay), lr_decay_every=cfg.lr_decay_every).validate()
    return poly, exact, train


def resolve_batch(cfg: RunConfig, n_features: int, min_windows: int, slots: int) -> int:
    """The batch a run trains with: ``cfg.batch`` when given, else (0 = auto) the largest batch that
    costs no more than a smaller one: one ciphertext holds ``slots / H^2`` samples (the packing's
    chunk, H = next power of two of max(d, h, output), :func:`rhode.packing.plan`), a larger batch
    needs more ciphertexts and a smaller one saves nothing; capped by ``min_windows`` (every holder
    draws a batch of distinct training windows) and by 4096."""
    if cfg.batch:
        return cfg.batch
    H = max(2, next_pow2(max(n_features, cfg.hidden, 1)))
    if slots < H * H:
        raise ParameterError(f"a model of width {max(n_features, cfg.hidden)} pads to H = {H}: an H x H "
                             f"block needs {H * H} slots, a ciphertext has {slots}; use a larger preset "
                             "(--preset)")
    if min_windows < 1:
        raise ParameterError("a data holder has no training window: give it more rows or lower --timesteps")
    return max(1, min(slots // (H * H), min_windows, 4096))


def run_fingerprint(cfg: RunConfig) -> str:
    """What a resume must match: the options that change what is computed, the preset, and the model
    and training configuration derived from them (approximation intervals and degrees, clip bound),
    so that a software version with other defaults cannot resume a run."""
    poly, _, train = model_configs(cfg, 1)
    derived = json.dumps([dataclasses.asdict(poly), dataclasses.asdict(train)], sort_keys=True)
    digest = hashlib.sha256(derived.encode()).hexdigest()[:8]
    return f"{cfg.fingerprint()}-{cfg.preset}-{digest}"


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict; ParameterError (naming ``--config FILE``) if it is missing,
    unreadable, not UTF-8 text or not valid TOML."""
    p = Path(path)
    where = f"--config {p}"
    try:
        with p.open("rb") as fh:
            return tomli.load(fh)
    except FileNotFoundError:
        raise ParameterError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ParameterError(f"{where}: a directory, not a TOML file") from None
    except OSError as exc:
        raise ParameterError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start}); save it as UTF-8") from None
    except tomli.TOMLDecodeError as exc:
        raise ParameterError(f"{where}: not valid TOML: {exc}") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """A ``--config`` TOML file as ``{field: value}`` (:func:`load_toml`, then :func:`flatten`)."""
    return flatten(load_toml(path), f"--config {path}")
