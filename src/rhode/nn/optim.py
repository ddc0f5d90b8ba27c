"""Mini-batch SGD step: W <- W - eta * clip(grad)."""

from __future__ import annotations

from rhode.errors import ParameterError
from rhode.nn.clip import make_clipper
from rhode.nn.config import TrainConfig
from rhode.tensor.base import Backend, Tensor


def sgd_update(backend: Backend, params: dict[str, Tensor], grads: dict[str, Tensor],
               train: TrainConfig) -> dict[str, Tensor]:
    """Return the updated parameters (same keys and order as ``params``). The learning rate is folded
    into the clipping polynomial (clip="none": one scalar product per parameter)."""
    missing = [k for k in params if k not in grads]
    if missing:
        raise ParameterError(f"no gradient for parameter(s) {', '.join(missing)}")
    clipper = make_clipper(train)
    return {k: backend.sub(w, clipper.apply(backend, grads[k])) for k, w in params.items()}
