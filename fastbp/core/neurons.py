"""The kinds of neuron a layer may have, and the numbers the math needs of each.

A hidden layer is ``sigmoid`` (the book's default), ``tanh`` or ``relu``; the output layer is
``sigmoid`` (quadratic and cross-entropy costs) or ``softmax`` (the log-likelihood cost). Every
derivative the backward pass needs is written from the activation ``a = f(z)`` alone, so no
``z`` is kept:

- sigmoid: ``σ'(z) = a (1 − a)``
- tanh: ``tanh'(z) = 1 − a²``
- relu: ``relu'(z) = [a > 0]``

Softmax, ``a_j = e^{z_j} / Σ_k e^{z_k}`` over each column, is computed with the column's largest
``z`` subtracted first (no overflow); with the log-likelihood cost BP1 is ``δ^L = a^L − y``, so
its Jacobian is never formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

HIDDEN = ("sigmoid", "tanh", "relu")
OUTPUTS = ("sigmoid", "softmax")
KINDS = ("sigmoid", "tanh", "relu", "softmax")
# the weight scale of init="scaled": W ~ N(0, gain² / n_in); He et al.'s √2 for relu
GAIN = {"sigmoid": 1.0, "tanh": 1.0, "relu": float(np.sqrt(2.0)), "softmax": 1.0}


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
    if kind == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the book's σ, without overflow
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.maximum(z, 0.0)
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def prime(kind: str, z: np.ndarray) -> np.ndarray:
    """``f'(z)`` from ``z`` itself (the oracle's way; the matrix path uses ``a``)."""
    if kind == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * z))
        return s * (1.0 - s)
    if kind == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if kind == "relu":
        return (z > 0).astype(z.dtype)
    raise ConfigError(f"{kind} is an output layer: BP1 gives its δ, BP2 never needs f'")
