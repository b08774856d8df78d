"""What every layer kind shares: the protocol, the work buffers, the neuron step.

Neurons: every hidden kind of the neuron table (:data:`fastbp.core.neurons.LAYER_HIDDEN`:
``sigmoid``, ``tanh``, ``relu`` and network3's ``linear``, ``f(z) = z``), ``softmax`` for the
output layer. ``f'`` is written from ``a = f(z)`` (``linear``: 1). Each step is the device's
operation for the kind (:meth:`fastbp.core.ops.Ops.bias_activation`,
:meth:`~fastbp.core.ops.Ops.mul_activation_prime`): its own kernel, else the table's form.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ...errors import ConfigError
from ..neurons import LAYER_HIDDEN
from ..ops import Array, Ops

ACTIVATIONS = LAYER_HIDDEN


def check_activation(kind: str, allowed: tuple[str, ...] = ACTIVATIONS) -> str:
    """``kind`` if it is one of ``allowed``, else ``ConfigError``."""
    if kind not in allowed:
        raise ConfigError(f"unknown activation {kind!r}; use one of {allowed}")
    return kind


def activate(backend: Ops, z: Array, b: Array, kind: str) -> Array:
    """In place: ``z ← f(z + b)``, ``b`` a column ``(n, 1)`` broadcast over ``z`` ``(n, N)``."""
    return backend.bias_activation(z, b, kind)


def times_prime(backend: Ops, x: Array, a: Array, kind: str, scratch: Array) -> Array:
    """In place: ``x ← x ⊙ f'(z)``, ``f'`` from ``a = f(z)`` (BP2's hadamard)."""
    return backend.mul_activation_prime(x, a, kind, scratch)


class Workspace:
    """A layer's buffers for one batch size, allocated on first use and reused after."""

    def __init__(self, backend: Ops) -> None:
        self.backend = backend
        self.buffers: dict[str, Array] = {}
        self.saved: dict[str, Any] = {}  # what the forward pass keeps for the backward one

    def get(self, name: str, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        """The buffer ``name`` of ``shape`` (a new one if the shape changed)."""
        buf = self.buffers.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = self.buffers[name] = self.backend.empty(shape, dtype)
        return buf


class Layer(Protocol):
    """A layer kind (chapter 6's ``ConvPool``, ``FullyConnected``, ``Softmax``)."""

    in_shape: tuple[int, ...]  # one sample's input
    out_shape: tuple[int, ...]  # one sample's output
    p_dropout: float

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of ``W`` and ``b``."""
        ...

    def init(self, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """``W`` and ``b`` drawn in float64 from ``rng`` (``numpy.random`` or a generator)."""
        ...

    def forward(self, backend: Ops, w: Array, b: Array, a: Array, ws: Workspace,
                mask: Array | None = None, train: bool = True) -> Array:
        """``a^l`` from ``a^{l-1}`` (``in_shape + (m,)``), keeping in ``ws`` what backward needs;
        ``mask``: the input's dropout mask in training."""
        ...

    def backward(self, backend: Ops, w: Array, ws: Workspace, error: Array,
                 below: bool = True) -> tuple[Array, Array, Array | None]:
        """``(∂C/∂W, ∂C/∂b, ∂C/∂a^{l-1} or None)`` from ``error`` (``∂C/∂a^l``, or ``δ^L``
        for the output layer), summed over the batch."""
        ...
