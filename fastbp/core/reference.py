"""The oracle: the book's per-sample algorithm as a plain loop (Nielsen's ``network.py``).

For each training sample ``x``: feedforward, output error ``δ^{x,L}`` (BP1), backpropagate the
error (BP2), output the gradient (BP3, BP4); the mini-batch gradient is the sum over samples.
NumPy only, column vectors only, no buffers: slow and obviously right. Tests hold the matrix
path to it; the benchmarks time it as the per-sample baseline.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import neurons
from .costs import QuadraticCost, output_of

Kinds = Sequence[str] | None


def _kinds(kinds: Kinds, layers: int, cost: Any) -> tuple[str, ...]:
    """Each layer's neuron: ``kinds``, or sigmoid hidden layers and the cost's output layer."""
    return neurons.layer_kinds(layers, "sigmoid", output_of(cost)) if kinds is None \
        else tuple(kinds)


def backprop_sample(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                    y: np.ndarray, cost: Any = QuadraticCost, kinds: Kinds = None
                    ) -> tuple[list, list]:
    """``(nabla_b, nabla_w)`` for one sample ``x`` ``(n_in, 1)``, target ``y`` ``(n_out, 1)``;
    ``kinds``: each layer's neuron (:mod:`fastbp.core.neurons`), ``f'`` taken from ``z``."""
    kinds = _kinds(kinds, len(weights), cost)
    activation, activations, zs = x, [x], []
    for b, w, kind in zip(biases, weights, kinds):
        z = w @ activation + b
        zs.append(z)
        activation = neurons.apply(kind, z)
        activations.append(activation)
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    delta = cost.delta(zs[-1], activations[-1], y)  # BP1
    nabla_b[-1] = delta  # BP3
    nabla_w[-1] = delta @ activations[-2].T  # BP4
    for l in range(2, len(weights) + 1):
        delta = (weights[-l + 1].T @ delta) * neurons.prime(kinds[-l], zs[-l])  # BP2
        nabla_b[-l] = delta
        nabla_w[-l] = delta @ activations[-l - 1].T
    return nabla_b, nabla_w


def backprop_loop(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], X: np.ndarray,
                  Y: np.ndarray, cost: Any = QuadraticCost, kinds: Kinds = None
                  ) -> tuple[list, list]:
    """The gradient summed over the columns of ``X``, one sample at a time."""
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    for j in range(X.shape[1]):
        db, dw = backprop_sample(weights, biases, X[:, j : j + 1], Y[:, j : j + 1], cost, kinds)
        nabla_b = [nb + d for nb, d in zip(nabla_b, db)]
        nabla_w = [nw + d for nw, d in zip(nabla_w, dw)]
    return nabla_b, nabla_w


def feedforward(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], a: np.ndarray,
                kinds: Kinds = None) -> np.ndarray:
    """``a^L`` for the columns of ``a`` (each on its own: softmax normalises every column)."""
    for b, w, kind in zip(biases, weights, neurons.kinds_of(kinds, len(weights))):
        a = neurons.apply(kind, w @ a + b)
    return a


def sgd_epoch(weights: list[np.ndarray], biases: list[np.ndarray], X: np.ndarray, Y: np.ndarray,
              batch_size: int, eta: float, cost: Any = QuadraticCost,
              order: np.ndarray | None = None, lmbda: float = 0.0, n: int | None = None,
              kinds: Kinds = None) -> None:
    """One epoch of the book's ``SGD`` in place: ``W ← W − (η/m) Σ_x ∂C_x/∂W`` per mini-batch;
    with ``lmbda`` > 0 the L2 step of chapter 3, ``W ← (1 − ηλ/n) W − (η/m) Σ_x ∂C_x/∂W``
    (``n``: the training set's size, default the columns of ``X``)."""
    order = np.arange(X.shape[1]) if order is None else order
    decay = 1.0 - eta * lmbda / (X.shape[1] if n is None else n)
    for start in range(0, len(order), batch_size):
        cols = order[start : start + batch_size]
        nabla_b, nabla_w = backprop_loop(weights, biases, X[:, cols], Y[:, cols], cost, kinds)
        for l in range(len(weights)):
            if lmbda:
                weights[l] *= decay
            weights[l] -= (eta / len(cols)) * nabla_w[l]
            biases[l] -= (eta / len(cols)) * nabla_b[l]
