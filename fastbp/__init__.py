"""fastbp: backpropagation in matrix form over the whole mini-batch, on the CPU or a CUDA GPU.

``import fastbp as network`` runs the book's chapter 1 code unchanged: ``network.Network(sizes)``
with ``SGD``, ``update_mini_batch``, ``backprop``, ``feedforward`` and ``evaluate``.

The package is layered (``docs/ARCHITECTURE.md``): :mod:`fastbp.core` (the equations, costs,
the epoch loop), :mod:`fastbp.devices` (backends and the registry), :mod:`fastbp.io` and
:mod:`fastbp.data` (files), :mod:`fastbp.model` (``Network`` and its training),
:mod:`fastbp.parallel` (MPI) and :mod:`fastbp.cli`. This module only re-exports; the old
module paths (``fastbp.network``, ``fastbp.mnist_loader``, ``fastbp.network3``, …) are answered
from one table, :mod:`fastbp.aliases`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import aliases
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
from .version import __version__

aliases.install()

if TYPE_CHECKING:  # the lazily imported names, as type checkers and the API reference see them
    from types import ModuleType

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
    from .model.evaluation import evaluate
    from .model.gradcheck import gradcheck
    from .model.monitoring import EarlyStopping, LearningRateSchedule, Monitor, Monitoring
    from .model.network import Network
    from .model.persist import load

    datasets: ModuleType  # the old paths of fastbp.aliases
    mnist_loader: ModuleType
    plots: ModuleType

# Everything else is imported when first used (PEP 562), so that ``import fastbp.cli`` takes
# milliseconds: the ``fastbp`` command turns a Ctrl-C at any moment, while NumPy and the devices
# load, into one line (fastbp.cli.main).
_LAZY = {
    "datasets": ".datasets", "mnist_loader": ".mnist_loader", "reference": ".core.reference",
    "CrossEntropyCost": ".core.costs", "LogLikelihoodCost": ".core.costs",
    "QuadraticCost": ".core.costs", "sigmoid": ".core.costs", "sigmoid_prime": ".core.costs",
    "EpochRecord": ".core.records", "Evaluation": ".core.records", "History": ".core.records",
    "Backend": ".devices", "NumpyBackend": ".devices", "backend_names": ".devices",
    "register_backend": ".devices", "use_device": ".devices",
    "evaluate": ".model.evaluation", "gradcheck": ".model.gradcheck",
    "EarlyStopping": ".model.monitoring", "LearningRateSchedule": ".model.monitoring",
    "Monitor": ".model.monitoring", "Monitoring": ".model.monitoring",
    "Network": ".model.network", "load": ".model.persist",
}

_MODULES = ("datasets", "mnist_loader", "reference")


def __getattr__(name: str) -> Any:
    """``fastbp.NAME``: a re-exported name, or a submodule, imported on first use."""
    where = _LAZY.get(name)
    if where is None:
        if name.startswith("__"):
            raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'fastbp' has no attribute {name!r}") from None
    module = importlib.import_module(where, __name__)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Backend", "ConfigError", "CrossEntropyCost", "DataError", "DeviceError", "EpochRecord",
    "FastbpError", "History", "LogLikelihoodCost", "ModelFormatError", "Network", "NumpyBackend",
    "QuadraticCost",
    "ShapeError", "TrainingDiverged", "backend_names", "datasets", "gradcheck", "mnist_loader",
    "reference", "register_backend", "sigmoid", "sigmoid_prime", "use_device",
    "EarlyStopping", "Evaluation", "MissingDependency", "Monitor", "Monitoring", "evaluate",
    "load", "SaveError", "__version__", "LearningRateSchedule", "plots",
]
