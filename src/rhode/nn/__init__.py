"""Recurrent models (Elman RNN, GRU, LSTM) written once against the tensor interface: forward, BPTT,
polynomial activations, approximate clipping, SGD, and the plaintext federated trainer."""

from rhode.nn.activations import ExactSigmoid, ExactTanh, sigmoid_poly, tanh_poly
from rhode.nn.clip import Clipper, make_clipper
from rhode.nn.config import ModelConfig, TrainConfig
from rhode.nn.fedavg import FedResult, evaluate, fedavg, train_federated
from rhode.nn.loss import mse, mse_loss
from rhode.nn.model import ForwardCache, RecurrentModel
from rhode.nn.optim import sgd_update
from rhode.nn.train import batch_indices, local_training

__all__ = [
    "Clipper", "ExactSigmoid", "ExactTanh", "FedResult", "ForwardCache", "ModelConfig",
    "RecurrentModel", "TrainConfig", "batch_indices", "evaluate", "fedavg", "local_training",
    "make_clipper", "mse", "mse_loss", "sgd_update", "sigmoid_poly", "tanh_poly", "train_federated",
]
