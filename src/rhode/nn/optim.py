"""The update of one mini-batch step, written once against the Backend interface.

* momentum 0 (plain SGD): W <- W - eta_k * clip(g).
* heavy ball (momentum mu > 0): V <- mu V + eta_k clip(g); W <- W - V.
* Nesterov: the standard reformulation (Sutskever et al. 2013; PyTorch's ``nesterov=True``), in which
  the stored parameters are the look-ahead point, so the gradient is the one at the current W:
  V <- mu V + eta_k clip(g); W <- (W - eta_k clip(g)) - mu V (the new V).

eta_k = learning_rate * lr_decay ** (k // lr_decay_every) is the learning rate of global iteration k,
folded into the clipping polynomial (:func:`rhode.nn.clip.make_clipper`). The velocity V starts at zero:
a holder without one (``velocity=None``) takes V = eta_k clip(g) (mu * 0 + ... without computing it).

Cost on ciphertexts, per parameter and step, beyond SGD's: heavy ball 1 constant product (mu V, 1
level) and 1 addition; Nesterov 2 constant products and 2 additions. No rotation, no ct x ct product.
"""

from __future__ import annotations

import dataclasses

from rhode.errors import ParameterError
from rhode.nn.clip import make_clipper
from rhode.nn.config import TrainConfig
from rhode.tensor.base import Backend, Tensor


def learning_rate_at(train: TrainConfig, iteration: int) -> float:
    """eta_k of global iteration ``iteration`` (k >= 0): the step-decay schedule."""
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ParameterError(f"iteration must be a non-negative integer, got {iteration!r}")
    if train.lr_decay == 1.0:
        return train.learning_rate
    return float(train.learning_rate * train.lr_decay ** (iteration // train.lr_decay_every))


def at_iteration(train: TrainConfig, iteration: int) -> TrainConfig:
    """``train`` with the learning rate of global iteration ``iteration`` (``train`` itself if the
    schedule leaves it unchanged, so a constant learning rate runs exactly today's operations)."""
    lr = learning_rate_at(train, iteration)
    return train if lr == train.learning_rate else dataclasses.replace(train, learning_rate=lr)


def _check(params: dict, other: dict, what: str = "gradient") -> None:
    missing = [k for k in params if k not in other]
    if missing:
        raise ParameterError(f"no {what} for parameter(s) {', '.join(missing)}")


def sgd_update(backend: Backend, params: dict[str, Tensor], grads: dict[str, Tensor],
               train: TrainConfig) -> dict[str, Tensor]:
    """Return the updated parameters (same keys and order as ``params``): W - eta * clip(g), eta =
    ``train.learning_rate``, folded into the clipping polynomial (clip="none": one scalar product per
    parameter). Levels on ciphertexts: the clip's (:meth:`rhode.nn.clip.Clipper.apply`)."""
    _check(params, grads)
    clipper = make_clipper(train)
    return {k: backend.sub(w, clipper.apply(backend, grads[k])) for k, w in params.items()}


def momentum_update(backend: Backend, params: dict[str, Tensor], grads: dict[str, Tensor],
                    velocity: dict[str, Tensor] | None,
                    train: TrainConfig) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One heavy-ball (or Nesterov) step with ``train.learning_rate`` as eta: returns (new parameters,
    new velocity), both with the keys of ``params``. ``velocity`` None: zero (the first step). Each
    tensor is parameter-shaped. Levels on ciphertexts: the clip's, and 1 for mu V (0 additions)."""
    _check(params, grads)
    if velocity is not None:
        _check(params, velocity, "velocity")
    clipper = make_clipper(train)
    mu = float(train.momentum)
    new_w: dict[str, Tensor] = {}
    new_v: dict[str, Tensor] = {}
    for k, w in params.items():
        u = clipper.apply(backend, grads[k])
        v = u if velocity is None else backend.add(backend.scale(velocity[k], mu), u)
        if train.nesterov:  # W - u first: on a ciphertext it sums a batch-pending u over the batch once
            new_w[k] = backend.sub(backend.sub(w, u), backend.scale(v, mu))
        else:
            new_w[k] = backend.sub(w, v)
        new_v[k] = v
    return new_w, new_v


def update(backend: Backend, params: dict[str, Tensor], grads: dict[str, Tensor],
           velocity: dict[str, Tensor] | None, train: TrainConfig,
           iteration: int) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """The step of global iteration ``iteration``: plain SGD when ``train.momentum`` is 0 (velocity
    stays None), else :func:`momentum_update`; the learning rate from the schedule. Returns (new
    parameters, new velocity)."""
    step_cfg = at_iteration(train, iteration)
    if train.momentum == 0:
        return sgd_update(backend, params, grads, step_cfg), None
    return momentum_update(backend, params, grads, velocity, step_cfg)
