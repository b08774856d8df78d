"""network3's activation functions and layer classes, with the book's signatures.

``activation_fn`` takes the book's functions (:func:`ReLU`, :func:`sigmoid`, :func:`tanh`,
:func:`linear`, which also work on NumPy arrays); each names a neuron kind of
:mod:`fastbp.core.layers`. As in the book, a layer draws its weights from ``numpy.random``
when it is built (``numpy.random.seed`` makes a run repeatable).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...core.layers import ConvPool, FullyConnected, Softmax
from ...core.neurons import NEURONS
from ...errors import ConfigError


def ReLU(z: Any) -> Any:  # noqa: N802 - the book's name
    """``max(0, z)``."""
    return np.maximum(0.0, z)


def sigmoid(z: Any) -> Any:
    """``σ(z) = 1 / (1 + e^{-z})`` in the neuron table's stable form (a few ulp everywhere)."""
    return NEURONS["sigmoid"].f64(np.asarray(z))


def tanh(z: Any) -> Any:
    """``tanh z``."""
    return np.tanh(z)


def linear(z: Any) -> Any:
    """``z``."""
    return z


KINDS: dict[Callable[[Any], Any], str] = {ReLU: "relu", sigmoid: "sigmoid", tanh: "tanh",
                                          linear: "linear"}


def kind_of(fn: Any) -> str:
    """The neuron kind of one of network3's activation functions."""
    kind = KINDS.get(fn)
    if kind is None:
        raise ConfigError(f"activation_fn {fn!r} is not one of network3's; use "
                          f"network3.ReLU, sigmoid, tanh or linear")
    return kind


class _Drawn:
    """The parameters a layer drew when it was built, as float64 host arrays."""

    params_host: tuple[np.ndarray, np.ndarray]

    @property
    def w(self) -> np.ndarray:
        """The weights in fastbp's layout (``(n_out, n_in)``; a conv layer's ``(F, C·kh·kw)``)."""
        return self.params_host[0]

    @property
    def b(self) -> np.ndarray:
        """The biases, a column."""
        return self.params_host[1]


class ConvPoolLayer(_Drawn, ConvPool):
    """``ConvPoolLayer(filter_shape, image_shape, poolsize=(2, 2), activation_fn=sigmoid)``:
    ``image_shape`` is ``(mini_batch_size, C, H, W)``, ``filter_shape`` ``(F, C, kh, kw)``."""

    def __init__(self, filter_shape: Any, image_shape: Any, poolsize: Any = (2, 2),
                 activation_fn: Any = sigmoid) -> None:
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
        if len(shape) != 4:
            raise ConfigError(f"image_shape must be (mini_batch_size, channels, height, width),"
                              f" got {image_shape!r}")
        super().__init__(filter_shape, shape[1:], poolsize, kind_of(activation_fn))
        self.activation_fn = activation_fn
        self.params_host = self.init(np.random)


class FullyConnectedLayer(_Drawn, FullyConnected):
    """``FullyConnectedLayer(n_in, n_out, activation_fn=sigmoid, p_dropout=0.0)``."""

    def __init__(self, n_in: int, n_out: int, activation_fn: Any = sigmoid,
                 p_dropout: float = 0.0) -> None:
        super().__init__(n_in, n_out, kind_of(activation_fn), p_dropout)
        self.activation_fn = activation_fn
        self.params_host = self.init(np.random)


class SoftmaxLayer(_Drawn, Softmax):
    """``SoftmaxLayer(n_in, n_out, p_dropout=0.0)``: zero weights and biases."""

    def __init__(self, n_in: int, n_out: int, p_dropout: float = 0.0) -> None:
        super().__init__(n_in, n_out, p_dropout)
        self.params_host = self.init(np.random)
