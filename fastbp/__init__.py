"""fastbp: backpropagation in matrix form over the whole mini-batch, on the CPU or a CUDA GPU.

``import fastbp as network`` runs the book's chapter 1 code unchanged: ``network.Network(sizes)``
with ``SGD``, ``update_mini_batch``, ``backprop``, ``feedforward`` and ``evaluate``.
"""

from . import datasets, mnist_loader, reference
from .backend import Backend, NumpyBackend
from .checkpoint import load
from .costs import CrossEntropyCost, QuadraticCost, sigmoid, sigmoid_prime
from .devices import backend_names, register_backend, use_device
from .errors import (
    ConfigError,
    DataError,
    DeviceError,
    FastbpError,
    MissingDependency,
    ModelFormatError,
    ShapeError,
    TrainingDiverged,
)
from .evaluation import Evaluation, evaluate
from .gradcheck import gradcheck
from .monitoring import EarlyStopping, Monitor, Monitoring
from .network import EpochRecord, History, Network

__version__ = "0.1.0"

__all__ = [
    "Backend", "ConfigError", "CrossEntropyCost", "DataError", "DeviceError", "EpochRecord",
    "FastbpError", "History", "ModelFormatError", "Network", "NumpyBackend", "QuadraticCost",
    "ShapeError", "TrainingDiverged", "backend_names", "datasets", "gradcheck", "mnist_loader",
    "reference", "register_backend", "sigmoid", "sigmoid_prime", "use_device",
    "EarlyStopping", "Evaluation", "MissingDependency", "Monitor", "Monitoring", "evaluate",
    "load",
]
