"""The decryption budget of a joint key: how many ciphertexts a run may reveal, planned before any key
is made, and the ledger that counts every revealed ciphertext against it.

Every threshold decryption or key switch of a ciphertext gives whoever sees the shares (the
aggregator, a querier, up to N-1 colluding holders) one more flooded share of each honest holder's
secret: one adversarial query in OpenFHE's terms. The flooding of every share is sized for
``q = decryption_budget`` such queries (:attr:`rhode.mhe.params.CkksParams.flood_bits`), so a run
must know ``q`` before its keys exist and must not reveal more (docs/security.md, "Decryption budget").

:func:`plan_budget` counts, in ciphertexts:

============  ================  ==================================================================
kind          count             what is revealed
============  ================  ==================================================================
statistics    2                 the global sums of pre-scaled values and of centred squares
loss          G                 the global training loss after each of the G global iterations
model         P                 the final model (one ciphertext per parameter tensor), if revealed
prediction    ceil(W / c)       the run's querier prediction on W held-out windows (c per ciphertext)
queries       K                 ``--query-batches``: later querier batches of up to c windows each
                                (``rhode predict``, the Flower querier), counted as predictions
============  ================  ==================================================================

:class:`DecryptionLedger` is written ahead: the count is stored (0600 JSON, ``decryptions.json``)
before the request for shares is sent, so a crash never loses a decryption from the count (it may
count one that did not happen), and a resumed run continues it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from rhode.errors import BudgetError, CheckpointError, ParameterError
from rhode.federated import codec as K
from rhode.federated.config import RunConfig, model_configs
from rhode.federated.files import DECRYPTIONS_FILE, atomic_write
from rhode.mhe import CkksParams
from rhode.mhe.params import MIN_REVEAL_BITS
from rhode.nn.model import RecurrentModel

LEDGER_NAME = DECRYPTIONS_FILE
#: the two secure sums of the global statistics, one ciphertext each
STATISTICS_CIPHERTEXTS = 2


class Reveal(str, Enum):
    """What a revealed ciphertext was."""

    STATISTICS = "statistics"
    LOSS = "loss"
    MODEL = "model"
    PREDICTION = "prediction"


@dataclass(frozen=True)
class BudgetPlan:
    """The ciphertexts a run plans to reveal, by kind (see the module docstring)."""

    statistics: int
    loss: int
    model: int
    prediction: int
    queries: int

    @property
    def total(self) -> int:
        return self.statistics + self.loss + self.model + self.prediction + self.queries

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def plan_budget(iterations: int, query_batches: int, *, model_ciphertexts: int = 0,
                test_windows: int = 0, windows_per_ciphertext: int = 1) -> BudgetPlan:
    """The decryption budget of a run of ``iterations`` global iterations that reveals its model
    (``model_ciphertexts`` > 0), predicts ``test_windows`` held-out windows for its own report
    (``windows_per_ciphertext`` per ciphertext) and keeps ``query_batches`` ciphertexts for later
    querier batches."""
    test = math.ceil(test_windows / windows_per_ciphertext) if test_windows else 0
    return BudgetPlan(STATISTICS_CIPHERTEXTS, iterations, model_ciphertexts, test, query_batches)


class DecryptionLedger:
    """The count of revealed ciphertexts under one joint key, against its ``budget``.

    Args:
        budget: the ``decryption_budget`` the keys' flooding was sized for.
        spent: ciphertexts revealed so far, by :class:`Reveal` value.
        path: where the count is kept (written before each reveal); None: in memory only.
    """

    def __init__(self, budget: int, spent: dict[str, int] | None = None, path: Path | None = None) -> None:
        self.budget = int(budget)
        self.spent = {k.value: 0 for k in Reveal}
        self.spent.update({k: int(v) for k, v in (spent or {}).items()})
        self.path = Path(path) if path is not None else None

    @property
    def used(self) -> int:
        return sum(self.spent.values())

    @property
    def left(self) -> int:
        return self.budget - self.used

    def check(self, count: int, what: str) -> None:
        """BudgetError if ``count`` more revealed ciphertexts (for ``what``) exceed the budget."""
        if count > self.left:
            raise BudgetError(
                f"{what} would reveal {count} ciphertext(s) but this joint key's decryption budget has "
                f"{self.left} of {self.budget} left (the noise flooding is sized for {self.budget}); "
                "start a new run (new keys) planned with a larger budget (--query-batches, --iterations)")

    def spend(self, kind: Reveal, count: int, what: str | None = None) -> None:
        """Count ``count`` ciphertexts of ``kind`` about to be revealed (stored first), or refuse."""
        self.check(count, what or f"the {kind.value}")
        self.spent[kind.value] += int(count)
        self.save()

    def to_dict(self) -> dict:
        return {"budget": self.budget, "used": self.used, "left": self.left, "spent": dict(self.spent)}

    def save(self) -> None:
        if self.path is not None:
            atomic_write(self.path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def create(cls, directory: str | Path, budget: int) -> DecryptionLedger:
        """A new ledger (nothing revealed yet) stored in ``directory``."""
        ledger = cls(budget, path=Path(directory) / LEDGER_NAME)
        ledger.save()
        return ledger

    @classmethod
    def load(cls, directory: str | Path, budget: int) -> DecryptionLedger:
        """The stored ledger of the keys whose budget is ``budget``; CheckpointError if it is missing,
        corrupted or kept for another budget."""
        path = Path(directory) / LEDGER_NAME
        try:
            d = json.loads(path.read_text())
            spent = {str(k): int(v) for k, v in d["spent"].items()}
            stored = int(d["budget"])
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing: the count of what this run's keys have decrypted "
                                  "is lost; start a new run (new keys) in another directory") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path} is unreadable or corrupted ({exc}); start a new run (new keys) "
                                  "in another directory") from None
        if stored != budget or set(spent) - {k.value for k in Reveal} or min(spent.values(), default=0) < 0:
            raise CheckpointError(f"{path} does not go with this run's keys (budget {stored}, the keys' "
                                  f"{budget}); start a new run (new keys) in another directory")
        return cls(stored, spent, path)


def budgeted(base: CkksParams, plan: BudgetPlan) -> CkksParams:
    """``base`` with its flooding sized for ``plan``; ParameterError saying what to change if the
    preset's scale cannot flood that many decryptions and keep :data:`MIN_REVEAL_BITS` bits."""
    if plan.total <= max_budget(base):
        return base.with_budget(plan.total)
    raise ParameterError(
        f"this run plans to reveal {plan.total} ciphertexts ({plan.loss} losses, one per global iteration; "
        f"{plan.model} model, {plan.prediction + plan.queries} prediction, {plan.statistics} statistics), "
        f"but the {base.name} preset's noise flooding leaves {MIN_REVEAL_BITS} bits of precision for at most "
        f"{max_budget(base)}: lower --iterations or --query-batches, or use a preset with a larger scale "
        "(--preset deep)")


def max_budget(base: CkksParams) -> int:
    """The largest decryption budget ``base`` floods with :data:`MIN_REVEAL_BITS` bits left."""
    return int(2.0 ** (2 * (base.with_budget(1).reveal_precision_bits - MIN_REVEAL_BITS)))


def run_budget(cfg: RunConfig, n_features: int, params: CkksParams) -> BudgetPlan:
    """The plan of an in-process run (``rhode train``/``rhode demo``, configuration ``cfg`` with its
    batch resolved, ``n_features`` inputs, CKKS ``params``): it reveals the statistics, a loss per
    iteration, the final model, its querier prediction on up to ``cfg.max_test_windows`` windows, and
    keeps ``cfg.query_batches`` for later queries."""
    model = RecurrentModel(model_configs(cfg, n_features)[0])
    return plan_budget(
        cfg.global_iterations, cfg.query_batches, model_ciphertexts=len(model.init_params(cfg.seed)),
        test_windows=cfg.max_test_windows, windows_per_ciphertext=K.plan_for(model, cfg.batch, params).c)


def ledger_report(ledger: DecryptionLedger, params: CkksParams, n_parties: int,
                  plan: dict | None = None) -> dict:
    """What the keys have revealed and may still reveal (report.json ``decryptions``), and how precisely
    a revealed value is known: each of ``n_parties`` flooded shares adds Gaussian noise of standard
    deviation 2^-reveal_precision_bits."""
    return {**ledger.to_dict(), "plan": plan, "reveal_precision_bits": params.reveal_precision_bits,
            "reveal_error_bound": params.reveal_error_bound(n_parties)}


def summary_line(d: dict) -> str:
    """The summary's line on :func:`ledger_report` ``d``."""
    return (f"  decryptions: {d['used']} ciphertexts revealed of the keys' budget of {d['budget']} "
            f"({d['left']} left for queries); a revealed value is within {d['reveal_error_bound']:.1e} "
            f"of the true one ({d['reveal_precision_bits']:.1f} bits per share)")
