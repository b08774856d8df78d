"""fastbp: backpropagation in matrix form over the whole mini-batch, on the CPU or a CUDA GPU.

``import fastbp as network`` runs the book's chapter 1 code unchanged: ``network.Network(sizes)``
with ``SGD``, ``update_mini_batch``, ``backprop``, ``feedforward`` and ``evaluate``.

The package is layered (``docs/ARCHITECTURE.md``): :mod:`fastbp.core` (the equations, costs,
the epoch loop), :mod:`fastbp.devices` (backends and the registry), :mod:`fastbp.io` and
:mod:`fastbp.data` (files), :mod:`fastbp.model` (``Network`` and its training),
:mod:`fastbp.parallel` (MPI) and :mod:`fastbp.cli`. This module only re-exports.
"""

from . import datasets, mnist_loader
from .core import reference
from .core.costs import (
    CrossEntropyCost,
    LogLikelihoodCost,
    QuadraticCost,
    sigmoid,
    sigmoid_prime,
)
from .core.records import EpochRecord, Evaluation, History
from .devices import Backend, NumpyBackend, backend_names, register_backend, use_device
from .errors import (
    ConfigError,
    DataError,
    DeviceError,
    FastbpError,
    MissingDependency,
    ModelFormatError,
    SaveError,
    ShapeError,
    TrainingDiverged,
)
from .io import plots
from .model.evaluation import evaluate
from .model.gradcheck import gradcheck
from .model.monitoring import EarlyStopping, LearningRateSchedule, Monitor, Monitoring
from .model.network import Network
from .model.persist import load
from .version import __version__

__all__ = [
    "Backend", "ConfigError", "CrossEntropyCost", "DataError", "DeviceError", "EpochRecord",
    "FastbpError", "History", "LogLikelihoodCost", "ModelFormatError", "Network", "NumpyBackend",
    "QuadraticCost",
    "ShapeError", "TrainingDiverged", "backend_names", "datasets", "gradcheck", "mnist_loader",
    "reference", "register_backend", "sigmoid", "sigmoid_prime", "use_device",
    "EarlyStopping", "Evaluation", "MissingDependency", "Monitor", "Monitoring", "evaluate",
    "load", "SaveError", "__version__", "LearningRateSchedule", "plots",
]
