"""The errors fastbp raises: each names the bad value and, where there is one, the fix."""

from __future__ import annotations

from typing import Any


class FastbpError(Exception):
    """Base class of every error fastbp raises on purpose."""


class ShapeError(FastbpError, ValueError):
    """An array has the wrong shape (a batch, a label matrix, a weight)."""


class ConfigError(FastbpError, ValueError):
    """A hyperparameter or option is out of range (``eta <= 0``, ``batch_size < 1``, ...)."""


class DataError(FastbpError):
    """A data file is missing, truncated, corrupt or does not match its checksum."""


class ModelFormatError(DataError):
    """A saved model file is not a fastbp model, or is damaged."""


class SaveError(ModelFormatError, OSError):
    """A file cannot be written where asked: not a regular file there (a device, a FIFO, a
    folder), a folder that does not exist or is not writable, too little space. (A
    ``ModelFormatError``, as every failed save has been, and an ``OSError``.)"""


class DeviceError(FastbpError, RuntimeError):
    """A device string is malformed, unknown, or the device cannot run here."""


class TrainingDiverged(FastbpError, ArithmeticError):
    """Training produced NaN or inf in the cost or the parameters: in ``epoch`` (its ``cost``),
    at ``layer``'s ``parameter`` (``"weights"``, ``"biases"``, or ``"cost"``); the network keeps
    the parameters of ``last_finite_epoch``."""

    epoch: int | None = None
    cost: float | None = None
    layer: int | None = None
    parameter: str | None = None
    last_finite_epoch: int | None = None
    terms: dict[str, float] = {}  # the step's terms (η, λ, λ₁, μ) that were set
    message_for: Any = None  # names -> the message with fixes under those names (the CLI's)


class MissingDependency(FastbpError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
