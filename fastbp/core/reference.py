"""The oracle: the book's per-sample algorithm as a plain loop (Nielsen's ``network.py``).

For each training sample ``x``: feedforward, output error ``δ^{x,L}`` (BP1), backpropagate the
error (BP2), output the gradient (BP3, BP4); the mini-batch gradient is the sum over samples.
NumPy only, column vectors only, no buffers: slow and obviously right. Tests hold the matrix
path to it; the benchmarks time it as the per-sample baseline.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import dropout, neurons
from .costs import QuadraticCost, output_of

Kinds = Sequence[str] | None


def _kinds(kinds: Kinds, layers: int, cost: Any) -> tuple[str, ...]:
    """Each layer's neuron: ``kinds``, or sigmoid hidden layers and the cost's output layer."""
    return neurons.layer_kinds(layers, "sigmoid", output_of(cost)) if kinds is None \
        else tuple(kinds)


def backprop_sample(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                    y: np.ndarray, cost: Any = QuadraticCost, kinds: Kinds = None,
                    masks: Sequence[np.ndarray] | None = None) -> tuple[list, list]:
    """``(nabla_b, nabla_w)`` for one sample ``x`` ``(n_in, 1)``, target ``y`` ``(n_out, 1)``;
    ``kinds``: each layer's neuron (:mod:`fastbp.core.neurons`), ``f'`` taken from ``z``;
    ``masks``: this sample's dropout column ``D^l`` of every hidden layer, if any."""
    kinds = _kinds(kinds, len(weights), cost)
    masks = [*(masks or [np.ones((w.shape[0], 1)) for w in weights[:-1]]), np.ones((1, 1))]
    activation, activations, zs = x, [x], []
    for b, w, kind, d in zip(biases, weights, kinds, masks):
        z = w @ activation + b
        zs.append(z)
        activation = neurons.apply(kind, z) * d  # ã^l = a^l ⊙ D^l
        activations.append(activation)
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    delta = cost.delta(zs[-1], activations[-1], y)  # BP1
    nabla_b[-1] = delta  # BP3
    nabla_w[-1] = delta @ activations[-2].T  # BP4
    for l in range(2, len(weights) + 1):
        delta = (weights[-l + 1].T @ delta) * neurons.prime(kinds[-l], zs[-l]) \
            * masks[-l]  # BP2
        nabla_b[-l] = delta
        nabla_w[-l] = delta @ activations[-l - 1].T
    return nabla_b, nabla_w


def backprop_loop(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], X: np.ndarray,
                  Y: np.ndarray, cost: Any = QuadraticCost, kinds: Kinds = None,
                  masks: Sequence[np.ndarray] | None = None) -> tuple[list, list]:
    """The gradient summed over the columns of ``X``, one sample at a time (``masks``: the
    batch's dropout masks ``D^l``, ``(n_l, m)``, one per hidden layer)."""
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    for j in range(X.shape[1]):
        cols = None if masks is None else [d[:, j : j + 1] for d in masks]
        db, dw = backprop_sample(weights, biases, X[:, j : j + 1], Y[:, j : j + 1], cost, kinds,
                                 cols)
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
              kinds: Kinds = None, *, mu: float = 0.0, l1: float = 0.0, dropout_p: float = 0.0,
              seed: int = 0, velocities: list[np.ndarray] | None = None) -> None:
    """One epoch of the book's ``SGD`` in place: ``W ← W − (η/m) Σ_x ∂C_x/∂W`` per mini-batch;
    with ``lmbda`` > 0 the L2 step of chapter 3, ``W ← (1 − ηλ/n) W − (η/m) Σ_x ∂C_x/∂W``
    (``n``: the training set's size, default the columns of ``X``).

    Chapter 3's techniques: with momentum ``mu`` or L1 weight ``l1`` the step goes through the
    ``velocities`` (``W``'s then ``b``'s, updated in place):
    ``v ← μ v − (η/m) Σ_x ∂C_x/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v``
    (``b`` likewise without the two penalties). With ``dropout_p`` each mini-batch's hidden
    neurons are dropped by the masks of :mod:`fastbp.core.dropout` for the epoch's ``seed``."""
    order = np.arange(X.shape[1]) if order is None else order
    n = X.shape[1] if n is None else n
    decay = 1.0 - eta * lmbda / n
    hidden = len(weights) - 1
    for step, start in enumerate(range(0, len(order), batch_size)):
        cols = order[start : start + batch_size]
        m = len(cols)
        masks = None if not dropout_p else [
            dropout.mask(dropout.step_key(seed, step, l), dropout_p, weights[l].shape[0], m)
            for l in range(hidden)]
        nabla_b, nabla_w = backprop_loop(weights, biases, X[:, cols], Y[:, cols], cost, kinds,
                                         masks)
        for l in range(len(weights)):
            if velocities is not None:
                v_w, v_b = velocities[l], velocities[hidden + 1 + l]
                v_w *= mu
                v_w -= (eta / m) * nabla_w[l] + (eta * lmbda / n) * weights[l] \
                    + (eta * l1 / n) * np.sign(weights[l])
                weights[l] += v_w
                v_b *= mu
                v_b -= (eta / m) * nabla_b[l]
                biases[l] += v_b
                continue
            if lmbda:
                weights[l] *= decay
            weights[l] -= (eta / m) * nabla_w[l]
            biases[l] -= (eta / m) * nabla_b[l]
