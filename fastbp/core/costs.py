"""Costs: the value ``C`` of a batch and the output error ``δ^L`` of BP1.

Each cost keeps the book's static API, ``fn(a, y)`` and ``delta(z, a, y)`` on NumPy arrays, and
adds ``output_error``, the form the matrix path uses: it writes ``δ^L`` into a buffer from the
activation alone (``σ'(z^L) = a^L ⊙ (1 − a^L)``) and returns the batch's summed cost. ``output``
names the output layer the cost goes with (sigmoid, or softmax for the log-likelihood).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .neurons import NEURONS

if TYPE_CHECKING:
    from .ops import Array, Ops


def sigmoid(z: Any) -> Any:
    """``σ(z) = 1 / (1 + e^{-z})`` on NumPy arrays (the book's helper): the neuron table's
    stable form, ``e^{min(z, 0)} / (1 + e^{−|z|})`` (:data:`fastbp.core.neurons.NEURONS`), a few
    ulp everywhere and never an overflow."""
    return NEURONS["sigmoid"].f64(np.asarray(z))


def sigmoid_prime(z: Any) -> Any:
    """``σ'(z) = σ(z)(1 − σ(z))``."""
    s = sigmoid(z)
    return s * (1.0 - s)


class QuadraticCost:
    """``C = ½ Σ_x ‖y(x) − a^L(x)‖²`` summed over the columns; ``δ^L = (a − y) ⊙ σ'(z^L)``."""

    name = "quadratic"
    output = "sigmoid"

    @staticmethod
    def fn(a: Any, y: Any) -> float:
        """``½ ‖a − y‖²``, summed over every column of the batch."""
        return 0.5 * float(np.sum((np.asarray(a) - np.asarray(y)) ** 2))

    @staticmethod
    def delta(z: Any, a: Any, y: Any) -> Any:
        """BP1 for this cost: ``δ^L = (a − y) ⊙ σ'(z^L)``."""
        return (a - y) * sigmoid_prime(z)

    @staticmethod
    def output_error(backend: Ops, a: Array, y: Array, out: Array, scratch: Array) -> Array:
        """BP1 into ``out``: ``δ^L = (a − y) ⊙ a ⊙ (1 − a)``; returns ``Σ ½ (a − y)²``."""
        backend.subtract(a, y, out=out)
        cost = backend.sum_squares(out)
        backend.mul_sigmoid_prime(out, a, scratch)
        return cost * 0.5


class CrossEntropyCost:
    """``C = −Σ_x Σ_j [y_j ln a_j + (1 − y_j) ln(1 − a_j)]``; ``δ^L = a − y`` (σ' cancels)."""

    name = "cross-entropy"
    output = "sigmoid"

    @staticmethod
    def fn(a: Any, y: Any) -> float:
        """The cross-entropy of the batch, finite even at saturated outputs (``a`` = 0 or 1)."""
        a, y = np.asarray(a, dtype=np.float64), np.asarray(y, dtype=np.float64)
        tiny = TINY["float64"]  # ln is clipped at ln(tiny) ≈ −708, so C stays finite
        return float(np.sum(-y * np.log(np.clip(a, tiny, 1.0))
                            - (1 - y) * np.log(np.clip(1 - a, tiny, 1.0))))

    @staticmethod
    def delta(z: Any, a: Any, y: Any) -> Any:
        """BP1 for this cost: ``δ^L = a − y``."""
        return a - y

    @staticmethod
    def output_error(backend: Ops, a: Array, y: Array, out: Array, scratch: Array) -> Array:
        """BP1 into ``out``: ``δ^L = a − y``; returns the batch's summed cross-entropy.

        For one-hot ``y``, ``−[y ln a + (1 − y) ln(1 − a)] = −ln(1 − |a − y|)``, clipped at the
        dtype's smallest normal number so that saturated outputs keep the cost finite.
        """
        backend.subtract(a, y, out=out)
        return -backend.sum_log1m_abs(out, scratch)


class LogLikelihoodCost:
    """``C = −Σ_x ln a^L_{y(x)}`` with a softmax output layer; ``δ^L = a^L − y``."""

    name = "log-likelihood"
    output = "softmax"

    @staticmethod
    def fn(a: Any, y: Any) -> float:
        """``−Σ_x ln a_y`` over the columns (one-hot ``y``), ``ln`` clipped at ``ln(tiny)``."""
        a, y = np.asarray(a, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return float(-np.sum(y * np.log(np.clip(a, TINY["float64"], 1.0))))

    @staticmethod
    def delta(z: Any, a: Any, y: Any) -> Any:
        """BP1 for softmax with this cost: ``δ^L = a − y``."""
        return a - y

    @staticmethod
    def output_error(backend: Ops, a: Array, y: Array, out: Array, scratch: Array) -> Array:
        """BP1 into ``out``: ``δ^L = a − y``; returns ``−Σ y ln max(a, tiny)``."""
        backend.subtract(a, y, out=out)
        return -backend.sum_log_picked(a, y, scratch)


TINY = {name: float(np.finfo(name).tiny) for name in ("float16", "float32", "float64")}

COSTS = {c.name: c for c in (QuadraticCost, CrossEntropyCost, LogLikelihoodCost)}
ALIASES = {"crossentropy": "cross-entropy", "loglikelihood": "log-likelihood",
           "log-likelihood-cost": "log-likelihood", "nll": "log-likelihood"}


def output_of(cost: Any) -> str:
    """The output layer a cost goes with: ``softmax`` for the log-likelihood, else sigmoid."""
    return getattr(cost, "output", "sigmoid")


def get_cost(cost: Any) -> Any:
    """A cost class from itself or its name (``quadratic``, ``cross-entropy``,
    ``log-likelihood``)."""
    from ..errors import ConfigError

    if isinstance(cost, str):
        key = cost.lower().replace("_", "-")
        key = ALIASES.get(key, key)
        if key not in COSTS:
            raise ConfigError(f"unknown cost {cost!r}; use one of {sorted(COSTS)}")
        return COSTS[key]
    missing = [m for m in ("fn", "delta", "output_error") if not hasattr(cost, m)]
    if missing:
        raise ConfigError(
            f"cost {cost!r} lacks {', '.join(missing)}: a cost gives fn(a, y), delta(z, a, y) "
            "and output_error(backend, a, y, out, scratch), like fastbp.QuadraticCost"
        )
    return cost
