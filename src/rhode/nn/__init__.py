"""Recurrent models (Elman RNN, GRU, LSTM) written once against the tensor interface: forward, BPTT,
polynomial activations, approximate clipping, SGD with momentum and a learning-rate schedule, and the
plaintext federated trainer."""

from rhode.nn.activations import ExactSigmoid, ExactTanh, sigmoid_poly, tanh_poly
from rhode.nn.clip import Clipper, make_clipper
from rhode.nn.config import ModelConfig, TrainConfig
from rhode.nn.fedavg import FedResult, evaluate, fedavg, train_federated
from rhode.nn.loss import mse, mse_loss
from rhode.nn.model import ForwardCache, RecurrentModel
from rhode.nn.optim import learning_rate_at, momentum_update, sgd_update, update
from rhode.nn.train import LocalResult, batch_indices, local_training, train_locally

__all__ = [
    "Clipper", "ExactSigmoid", "ExactTanh", "FedResult", "ForwardCache", "LocalResult", "ModelConfig",
    "RecurrentModel", "TrainConfig", "batch_indices", "evaluate", "fedavg", "learning_rate_at",
    "local_training", "make_clipper", "momentum_update", "mse", "mse_loss", "sgd_update", "sigmoid_poly",
    "tanh_poly", "train_federated", "train_locally", "update",
]
