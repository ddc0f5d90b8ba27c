"""A recurrent model: an RNN, GRU or LSTM cell over T timesteps and a many-to-one linear head.

    H_T = cell(X_1 .. X_T)        Yhat = H_T W_y + b_y        L = 1/(2b) ||Yhat - Y||^2

Written once against :class:`rhode.tensor.base.Backend`: the same code runs on numpy arrays (the
plaintext mirror, or the non-secure baseline with exact activations) and on packed ciphertexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rhode.errors import ParameterError
from rhode.nn import gru, lstm, rnn
from rhode.nn.activations import make_activations
from rhode.nn.config import ModelConfig
from rhode.tensor.base import Backend, Tensor

_CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm}


@dataclass
class ForwardCache:
    """What :meth:`RecurrentModel.backward` needs from the forward pass."""

    h_last: Tensor
    steps: list[dict] = field(default_factory=list)


class RecurrentModel:
    """RNN/GRU/LSTM with a linear regression head on the last hidden state.

    Attributes:
        config: the validated :class:`ModelConfig`.
        param_shapes: ordered parameter names -> shapes; weights (n, m), biases (m,). The cell's
            parameters (see :mod:`rhode.nn.rnn`, :mod:`rhode.nn.gru`, :mod:`rhode.nn.lstm`) then the
            head W_y (h, output_size), b_y (output_size,).
        tanh, sigmoid: the activations (``f`` and its derivative ``df``) evaluated with backend.poly.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config.validate()
        self._cell = _CELLS[config.cell]
        d, h, o = config.input_size, config.hidden_size, config.output_size
        self.param_shapes: dict[str, tuple[int, ...]] = {
            **self._cell.param_shapes(d, h), "W_y": (h, o), "b_y": (o,)}
        self.tanh, self.sigmoid = make_activations(config)

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        """Weights and biases uniform in [-1/sqrt(h), 1/sqrt(h)] (torch's default), from ``seed``
        only: every party that knows the seed gets the same initial model. float64 arrays."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer (--seed), got {seed!r}")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x524E4E]))
        k = 1.0 / np.sqrt(self.config.hidden_size)
        return {name: rng.uniform(-k, k, size=shape) for name, shape in self.param_shapes.items()}

    def check_inputs(self, xs: Sequence[Tensor]) -> None:
        """Raise :class:`ParameterError` unless xs is a non-empty sequence of (b, input_size) tensors."""
        if len(xs) == 0:
            raise ParameterError("a sequence needs at least one timestep (--timesteps; got T = 0)")
        shape = np.shape(xs[0])
        if len(shape) != 2 or shape[1] != self.config.input_size:
            raise ParameterError(
                f"each timestep must be a (batch, {self.config.input_size}) tensor, got shape {shape}")

    def forward(self, backend: Backend, params: dict[str, Tensor],
                xs: Sequence[Tensor]) -> tuple[Tensor, ForwardCache]:
        """Forward pass for training. xs: T batch tensors (b, d) (``backend.data`` of a data holder's
        windows, or a querier's encrypted inputs). Returns Yhat (b, output_size) and the cache for
        :meth:`backward` (which includes the activation derivatives, computed here in parallel with
        the activations)."""
        self.check_inputs(xs)
        h_last, steps = self._cell.forward(backend, params, xs, self.tanh, self.sigmoid, train=True)
        return self._head(backend, params, h_last), ForwardCache(h_last, steps)

    def predict(self, backend: Backend, params: dict[str, Tensor], xs: Sequence[Tensor]) -> Tensor:
        """Yhat (b, output_size), without computing anything only training needs."""
        self.check_inputs(xs)
        h_last, _ = self._cell.forward(backend, params, xs, self.tanh, self.sigmoid, train=False)
        return self._head(backend, params, h_last)

    @staticmethod
    def _head(backend: Backend, params: dict[str, Tensor], h_last: Tensor) -> Tensor:
        return backend.affine([(h_last, params["W_y"])], params["b_y"])

    def backward(self, backend: Backend, params: dict[str, Tensor], cache: ForwardCache, yhat: Tensor,
                 y: Tensor, batch_size: int) -> dict[str, Tensor]:
        """Gradients of L = 1/(2b) ||Yhat - Y||^2 with respect to every parameter (BPTT).

        y: the targets (b, output_size) as ``backend.data``. E = (Yhat - Y) * (1/b) is a product with
        plaintext data (on ciphertexts it also zeroes padded batch positions). Returns a dict with the
        keys and shapes of :attr:`param_shapes` (gradients that are identically zero, e.g. U for T = 1,
        are ``backend.param(zeros)``).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ParameterError(f"the batch size (--batch) must be a positive integer, got {batch_size!r}")
        inv_b = np.full((batch_size, self.config.output_size), 1.0 / batch_size)
        e = backend.mul(backend.sub(yhat, y), backend.data(inv_b))
        grads = {"W_y": backend.outer(cache.h_last, e), "b_y": backend.batch_sum(e)}
        g = backend.affine_t([(e, params["W_y"])])
        grads.update(self._cell.backward(backend, params, cache.steps, g))
        return {name: grads[name] if name in grads else backend.param(np.zeros(shape))
                for name, shape in self.param_shapes.items()}
