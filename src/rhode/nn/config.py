"""Model and training hyperparameters (public: every party agrees on them before training).

Defaults are chosen on the plaintext mirror (see docs/approximations.md): inputs normalized to about
[-1, 1], weights initialized uniform in +-1/sqrt(h), gradients of the MSE of a small regression model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rhode.errors import ParameterError

CELLS = ("rnn", "gru", "lstm")
ACTIVATIONS = ("poly", "exact")
CLIPS = ("none", "poly", "tanh", "abs")
MAX_DEGREE = 59  # OpenFHE Chebyshev series of degree 28-59 cost 7 levels; beyond is never worth it


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ParameterError(f"{name} must be a positive finite number, got {value!r}")


def _count(name: str, value: int, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")


def _odd_degree(name: str, value: int) -> None:
    _count(name, value, 1)
    if value % 2 == 0 or value > MAX_DEGREE:
        raise ParameterError(
            f"{name} must be odd and between 1 and {MAX_DEGREE} (the approximation is an odd function: "
            f"an even degree costs a level for nothing), got {value}; try {min(value + 1, MAX_DEGREE)}")


@dataclass(frozen=True)
class ModelConfig:
    """A recurrent model: one cell over T timesteps, then a linear head on the last hidden state.

    Attributes:
        cell: "rnn" (Elman, tanh), "gru" (torch.nn.GRU convention) or "lstm".
        input_size: d, features per timestep.
        hidden_size: h.
        output_size: outputs of the many-to-one regression head.
        activation: "poly" (the Chebyshev approximations the encrypted run evaluates: the mirror) or
            "exact" (numpy tanh/sigmoid: the non-secure baseline; numpy backend only).
        tanh_interval: a, tanh is approximated on [-a, a] (hidden pre-activations, LSTM cell state).
        tanh_degree: odd degree of the tanh approximation.
        sigmoid_interval: s, the sigmoid (GRU/LSTM gates) is approximated on [-s, s].
        sigmoid_degree: odd degree of the sigmoid approximation (sigmoid - 1/2 is odd).
    """

    cell: str
    input_size: int
    hidden_size: int
    output_size: int = 1
    activation: str = "poly"
    tanh_interval: float = 2.5
    tanh_degree: int = 7
    sigmoid_interval: float = 4.0
    sigmoid_degree: int = 5

    def validate(self) -> ModelConfig:
        """Raise :class:`ParameterError` naming the bad field and what to use; return ``self``."""
        if self.cell not in CELLS:
            raise ParameterError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.activation not in ACTIVATIONS:
            raise ParameterError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        _count("input_size", self.input_size)
        _count("hidden_size", self.hidden_size)
        _count("output_size", self.output_size)
        _positive("tanh_interval", self.tanh_interval)
        _positive("sigmoid_interval", self.sigmoid_interval)
        _odd_degree("tanh_degree", self.tanh_degree)
        _odd_degree("sigmoid_degree", self.sigmoid_degree)
        return self


@dataclass(frozen=True)
class TrainConfig:
    """Mini-batch SGD with an (approximate) clip-by-value of every gradient entry.

    Each update is W <- W - eta_k * clip(grad) (momentum 0), or heavy ball V <- mu V + eta_k clip(grad),
    W <- W - V (:mod:`rhode.nn.optim`), the learning rate eta_k of global iteration k folded into the
    clipping polynomial (or one scalar product for clip="none").

    Attributes:
        learning_rate: eta.
        batch_size: b, windows per mini-batch.
        local_steps: m, mini-batch steps per party per global iteration.
        clip: "none", "poly" (Chebyshev fit of clip_c on [-B, B]), "tanh" (c*tanh(g/c)) or
            "abs" ((|g+c| - |g-c|)/2 with |u| ~ sqrt(u^2) as a polynomial in u^2).
        clip_value: c, the clipping threshold.
        clip_bound: B, gradients are assumed to lie in [-B, B] (the polynomial's interval).
        clip_degree: degree of the clipping polynomial (odd for "poly" and "tanh").
        momentum: mu in [0, 1), heavy-ball momentum; 0 is plain SGD (the same operations as without).
        nesterov: Nesterov's momentum (the look-ahead reformulation, :mod:`rhode.nn.optim`).
        lr_decay: step decay in (0, 1]: eta_k = learning_rate * lr_decay ** (k // lr_decay_every).
        lr_decay_every: global iterations between two decays (>= 1).
    """

    learning_rate: float
    batch_size: int
    local_steps: int
    clip: str = "tanh"
    clip_value: float = 1.0
    clip_bound: float = 2.0
    clip_degree: int = 5
    momentum: float = 0.0
    nesterov: bool = False
    lr_decay: float = 1.0
    lr_decay_every: int = 1

    def validate(self) -> TrainConfig:
        """Raise :class:`ParameterError` naming the bad field and what to use; return ``self``."""
        _positive("learning_rate", self.learning_rate)
        _count("batch_size", self.batch_size)
        _count("local_steps", self.local_steps)
        self._validate_schedule()
        if self.clip not in CLIPS:
            raise ParameterError(f"clip must be one of {', '.join(CLIPS)}, got {self.clip!r}")
        if self.clip == "none":
            return self
        _positive("clip_value", self.clip_value)
        _positive("clip_bound", self.clip_bound)
        if self.clip_bound <= self.clip_value:
            raise ParameterError(
                f"clip_bound (B = {self.clip_bound}, the interval [-B, B] gradients are assumed to lie in) "
                f"must exceed clip_value (c = {self.clip_value}), otherwise nothing is clipped; "
                "raise clip_bound or use clip='none'")
        if self.clip in ("poly", "tanh"):
            _odd_degree("clip_degree", self.clip_degree)
        else:
            _count("clip_degree", self.clip_degree, 2)
            if self.clip_degree > MAX_DEGREE:
                raise ParameterError(f"clip_degree must be at most {MAX_DEGREE}, got {self.clip_degree}")
        return self

    def _validate_schedule(self) -> None:
        """Momentum and the learning-rate schedule."""
        mu = self.momentum
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not (0.0 <= mu < 1.0):
            raise ParameterError(
                f"momentum must be a number in [0, 1) (0: plain SGD; 0.7 is a typical heavy ball), "
                f"got {mu!r}")
        if not isinstance(self.nesterov, bool):
            raise ParameterError(f"nesterov must be true or false, got {self.nesterov!r}")
        if self.nesterov and mu == 0:
            raise ParameterError("nesterov needs a momentum > 0 (with momentum 0 it is plain SGD)")
        d = self.lr_decay
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not (0.0 < d <= 1.0):
            raise ParameterError(
                f"lr_decay must be a number in (0, 1] (1: a constant learning rate), got {d!r}")
        _count("lr_decay_every", self.lr_decay_every)
