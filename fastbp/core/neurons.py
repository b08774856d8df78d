"""The kinds of neuron a layer may have, and the numbers the math needs of each.

A hidden layer is ``sigmoid`` (the book's default), ``tanh`` or ``relu``, and in chapter 6's
layer stacks also ``linear`` (network3's ``f(z) = z``); the output layer is ``sigmoid``
(quadratic and cross-entropy costs) or ``softmax`` (the log-likelihood cost). Every derivative
the backward pass needs is written from the activation ``a = f(z)`` alone, so no ``z`` is kept:

- sigmoid: ``σ(z) = 1 / (1 + e^{−z})``, ``σ'(z) = a (1 − a)``
- tanh: ``tanh'(z) = 1 − a²``
- relu: ``relu(z) = max(z, 0)``, ``relu'(z) = [a > 0]``
- linear: ``f(z) = z``, ``f'(z) = 1``

Softmax, ``a_j = e^{z_j} / Σ_k e^{z_k}`` over each column, is computed with the column's largest
``z`` subtracted first (no overflow); with the log-likelihood cost BP1 is ``δ^L = a^L − y``, so
its Jacobian is never formed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Neuron:
    """One kind of neuron: its name, its place (``hidden`` layers, the ``output`` layer;
    ``dense``: offered by :class:`fastbp.Network`, whose dense stacks the devices' own whole
    epochs run, where a hidden kind without it is for chapter 6's layer stacks only), the
    weight gain of ``init="scaled"`` (``W ~ N(0, gain²/n_in)``: He et al.'s √2 for relu), and
    its array forms, written once against an array module ``xp`` with ``out=`` (NumPy, CuPy):

    - ``activate(xp, z, axis)``: in place ``z ← f(z)`` (softmax along ``axis``: 0 for columns,
      1 for sample-major rows);
    - ``prime(xp, a, out)``: ``out ← f'(z)`` written from ``a = f(z)`` (``None`` for the
      softmax output: BP1 gives its δ, BP2 never needs it);
    - ``f64(z)`` and ``prime64(z)``: float64 NumPy forms from ``z``, for the oracle.

    A device with kernels of its own registers them by the kind's name
    (:meth:`fastbp.devices.backend.Backend.neuron_kernels`)."""

    name: str
    hidden: bool
    output: bool
    dense: bool
    gain: float
    activate: Callable[[Any, Any, int], Any]
    prime: Callable[[Any, Any, Any], Any] | None
    f64: Callable[[np.ndarray], np.ndarray]
    prime64: Callable[[np.ndarray], np.ndarray] | None


def _sigmoid(xp: Any, z: Any, axis: int = 0) -> Any:
    """``σ(z) = 1 / (1 + e^{−z})`` in place, a few ulp everywhere; ``e^{−z}`` may overflow to
    inf where σ is 0."""
    xp.negative(z, out=z)
    with np.errstate(over="ignore"):
        xp.exp(z, out=z)
    xp.add(z, 1.0, out=z)
    return xp.divide(1.0, z, out=z)


def _sigmoid_prime(xp: Any, a: Any, out: Any) -> Any:
    xp.subtract(1.0, a, out=out)
    return xp.multiply(out, a, out=out)


def _tanh_prime(xp: Any, a: Any, out: Any) -> Any:
    xp.multiply(a, a, out=out)
    return xp.subtract(1.0, out, out=out)


def _softmax(xp: Any, z: Any, axis: int = 0) -> Any:
    """In place along ``axis``, shifted by the largest entry (no exponent overflows)."""
    xp.subtract(z, xp.max(z, axis=axis, keepdims=True), out=z)
    xp.exp(z, out=z)
    return xp.divide(z, xp.sum(z, axis=axis, keepdims=True), out=z)


def _sigmoid64(z: np.ndarray) -> np.ndarray:
    """``σ(z) = e^{min(z, 0)} / (1 + e^{−|z|})``: no exponent overflows, and a small σ keeps its
    digits (unlike ``(1 + tanh(z/2)) / 2``)."""
    return np.exp(np.minimum(z, 0.0)) / (1.0 + np.exp(-np.abs(z)))


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def _sigmoid_prime64(z: np.ndarray) -> np.ndarray:
    s = _sigmoid64(z)
    return s * (1.0 - s)


def _tanh(xp: Any, z: Any, axis: int = 0) -> Any:
    return xp.tanh(z, out=z)


def _tanh_prime64(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _relu(xp: Any, z: Any, axis: int = 0) -> Any:
    return xp.maximum(z, 0.0, out=z)


def _relu_prime(xp: Any, a: Any, out: Any) -> Any:
    return xp.greater(a, 0.0, out=out)


def _relu64(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _relu_prime64(z: np.ndarray) -> np.ndarray:
    return (z > 0).astype(z.dtype)


def _linear(xp: Any, z: Any, axis: int = 0) -> Any:
    """``f(z) = z``: nothing to do in place."""
    return z


def _linear_prime(xp: Any, a: Any, out: Any) -> Any:
    """``f'(z) = 1``."""
    out[...] = 1.0
    return out


def _linear64(z: np.ndarray) -> np.ndarray:
    return z


def _linear_prime64(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


NEURONS: dict[str, Neuron] = {n.name: n for n in (
    Neuron("sigmoid", True, True, True, 1.0, _sigmoid, _sigmoid_prime, _sigmoid64,
           _sigmoid_prime64),
    Neuron("tanh", True, False, True, 1.0, _tanh, _tanh_prime, np.tanh, _tanh_prime64),
    Neuron("relu", True, False, True, float(np.sqrt(2.0)), _relu, _relu_prime, _relu64,
           _relu_prime64),
    Neuron("softmax", False, True, True, 1.0, _softmax, None, _softmax64, None),
    Neuron("linear", True, False, False, 1.0, _linear, _linear_prime, _linear64,
           _linear_prime64),
)}
"""The neuron table: the one place a kind of neuron is described."""

HIDDEN = tuple(name for name, n in NEURONS.items() if n.hidden and n.dense)
"""The hidden kinds of :class:`fastbp.Network` (its dense stacks)."""
LAYER_HIDDEN = tuple(name for name, n in NEURONS.items() if n.hidden)
"""The hidden kinds of chapter 6's layers (:mod:`fastbp.core.layers`): every hidden record."""
OUTPUTS = tuple(name for name, n in NEURONS.items() if n.output)
KINDS = tuple(NEURONS)
GAIN = {name: n.gain for name, n in NEURONS.items()}  # the weight scale of init="scaled"


def neuron(kind: str) -> Neuron:
    """The table's record of ``kind``, or ``ConfigError`` naming the kinds there are."""
    try:
        return NEURONS[kind]
    except KeyError:
        raise ConfigError(f"unknown neuron kind {kind!r}; use one of {KINDS}") from None


def layer_kinds(layers: int, activation: Any = "sigmoid", output: str = "sigmoid"
                ) -> tuple[str, ...]:
    """The kind of every layer after the input: ``activation`` for the ``layers − 1`` hidden
    ones (one name, or one per hidden layer), then ``output``."""
    hidden = layers - 1
    if isinstance(activation, str):
        names = [activation] * hidden
    else:
        try:
            names = list(activation)
        except TypeError as exc:
            raise ConfigError(f"activation must be a name or a list of names, got "
                              f"{activation!r}") from exc
        if len(names) != hidden:
            raise ConfigError(f"activation lists {len(names)} kinds, but the network has "
                              f"{hidden} hidden layers: give one name or one per hidden layer")
    for name in names:
        if name not in HIDDEN:
            raise ConfigError(f"unknown activation {name!r}; use one of {HIDDEN}")
    if output not in OUTPUTS:
        raise ConfigError(f"unknown output layer {output!r}; use one of {OUTPUTS}")
    return (*names, output)


def check_kinds(kinds: Sequence[Any], layers: int) -> tuple[str, ...]:
    """``kinds`` as a tuple of ``layers`` layer kinds (hidden ones, then the output)."""
    kinds = tuple(kinds)
    if len(kinds) != layers or any(k not in HIDDEN for k in kinds[:-1]) or \
            kinds[-1] not in OUTPUTS:
        raise ConfigError(f"layer kinds {kinds!r} do not fit {layers} layers: hidden ones from "
                          f"{HIDDEN}, the output from {OUTPUTS}")
    return kinds


def kinds_of(kinds: Sequence[str] | None, layers: int) -> tuple[str, ...]:
    """``kinds``, or every layer sigmoid when ``None`` (the book's network)."""
    return ("sigmoid",) * layers if kinds is None else tuple(kinds)


# -- NumPy forms, for the oracle ------------------------------------------------------------
def apply(kind: str, z: np.ndarray) -> np.ndarray:
    """``a = f(z)`` for a batch of columns ``z``."""
    return neuron(kind).f64(z)


def prime(kind: str, z: np.ndarray) -> np.ndarray:
    """``f'(z)`` from ``z`` itself (the oracle's way; the matrix path uses ``a``)."""
    f = neuron(kind).prime64
    if f is None:
        raise ConfigError(f"{kind} is an output layer: BP1 gives its δ, BP2 never needs f'")
    return f(z)
