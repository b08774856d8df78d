"""The suite's checks of the other neurons: tanh and relu hidden layers, the softmax output with
the log-likelihood cost ``C = −ln a^L_y`` (BP1: ``δ^L = a^L − y``), and BP2 with ``f'`` written
from the activation (``1 − a²``, ``[a > 0]``). Held to the per-sample oracle
(:mod:`fastbp.core.reference`) and to central differences, as the sigmoid network is in
:mod:`fastbp.testing.checks_math`. Each test takes ``conformance_device``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ..core import reference
from ..core.costs import CrossEntropyCost, LogLikelihoodCost, QuadraticCost
from ..model.gradcheck import gradcheck
from . import oracle
from .paths import Path

# (hidden neuron, cost): the cost fixes the output layer (softmax for the log-likelihood)
NEURONS = [("relu", LogLikelihoodCost), ("tanh", CrossEntropyCost), ("tanh", LogLikelihoodCost),
           ("sigmoid", LogLikelihoodCost), ("relu", QuadraticCost)]
NEURON_IDS = ["relu-softmax", "tanh-xent", "tanh-softmax", "sigmoid-softmax", "relu-quadratic"]
EPOCH_NEURONS = NEURONS[:3]  # every path: one each of relu, tanh and the softmax output
LMBDA = 5.0
ETA = 0.5


def _net(device: Any, sizes: Any, activation: Any, cost: Any, dtype: str = "float64") -> Any:
    return device.network(sizes, cost=cost, dtype=dtype, init="scaled", activation=activation)


@pytest.mark.parametrize("sizes,m", [([6, 4], 3), ([8, 5, 3], 7), ([10, 9, 7, 5, 3], 7),
                                     ([100, 100, 10], 64)], ids=["1-layer", "2", "4", "wide"])
@pytest.mark.parametrize("activation,cost", NEURONS, ids=NEURON_IDS)
def test_conformance_neurons_backprop_matches_the_oracle(conformance_device: Any,
                                                         sizes: list[int], m: int,
                                                         activation: str, cost: Any) -> None:
    """``feedforward`` and ``backprop`` of tanh/relu layers and the softmax output equal the
    per-sample loop in float64."""
    net = _net(conformance_device, sizes, activation, cost)
    X, _, Y = oracle.batch(sizes, m, seed=m)
    W, B = [np.array(w) for w in net.weights], [np.array(b) for b in net.biases]
    out = np.hstack([reference.feedforward(W, B, X[:, j : j + 1], net.kinds) for j in range(m)])
    oracle.assert_parameters_close([net.feedforward(X)], [out], oracle.ATOL, what="a^L")
    nabla_b, nabla_w = net.backprop(X, Y)
    want_b, want_w = reference.backprop_loop(W, B, X, Y, cost, net.kinds)
    oracle.assert_parameters_close([*nabla_w, *nabla_b], [*want_w, *want_b], oracle.ATOL,
                                   what="backprop")


def test_conformance_mixed_layers_match_the_oracle(conformance_device: Any) -> None:
    """A neuron per hidden layer (relu, tanh, sigmoid) under a softmax output: one epoch with
    L2 equals the oracle's."""
    sizes, n, m = [10, 9, 7, 5, 3], 29, 6
    net = _net(conformance_device, sizes, ["relu", "tanh", "sigmoid"], LogLikelihoodCost)
    X, labels, Y = oracle.batch(sizes, n, seed=5)
    start, order = oracle.parameters(net), oracle.next_order(net, n)
    history = net.train(X, labels, epochs=1, batch_size=m, eta=ETA, lmbda=LMBDA)
    want, total = oracle.reference_epoch(start, X, Y, m, ETA, LogLikelihoodCost, order, LMBDA,
                                         net.kinds)
    oracle.assert_parameters_close(oracle.parameters(net), want, oracle.ATOL, what="mixed")
    assert history[0].cost == pytest.approx(total / n, rel=oracle.COST_RTOL)


@pytest.mark.parametrize("sizes", [[5, 4, 3], [7, 6, 5, 4]], ids=["2", "3"])
@pytest.mark.parametrize("activation,cost", NEURONS, ids=NEURON_IDS)
def test_conformance_neurons_gradcheck(conformance_device: Any, sizes: list[int],
                                       activation: str, cost: Any) -> None:
    """Backprop through tanh/relu layers and the softmax output agrees with central
    differences of the cost (``ε = 10⁻⁵``: tanh's third derivative makes the ``O(ε²)`` error
    of the default ``10⁻⁴`` reach 10⁻⁶ on the smallest gradients)."""
    net = _net(conformance_device, sizes, activation, cost)
    X, _, Y = oracle.batch(sizes, 9, seed=3)
    assert gradcheck(net, X, Y, eps=1e-5) < 1e-6


def _epoch_case(device: Any, path: Path, activation: str, cost: Any, dtype: str
                ) -> tuple[Any, list[np.ndarray], float, list[np.ndarray]]:
    X, labels, Y = oracle.batch(path.sizes, path.n, seed=path.n)
    net = _net(device, path.sizes, activation, cost, dtype)
    start, order = oracle.parameters(net), oracle.next_order(net, path.n)
    Xd = X.astype(dtype)
    history = net.train(Xd, labels, epochs=1, batch_size=path.batch_size, eta=ETA, lmbda=LMBDA)
    want, total = oracle.reference_epoch(start, Xd.astype(np.float64), Y, path.batch_size, ETA,
                                         cost, order, LMBDA, net.kinds)
    return history, oracle.parameters(net), total, want


@pytest.mark.parametrize("activation,cost", EPOCH_NEURONS, ids=NEURON_IDS[:3])
def test_conformance_neurons_epoch_matches_the_oracle(conformance_device: Any,
                                                      conformance_path: Path, activation: str,
                                                      cost: Any) -> None:
    """One shuffled float64 epoch with L2 (the device's own, on each path) equals the book's
    per-sample SGD with the same neurons: every parameter to 1e-10, and the epoch's cost."""
    history, got, total, want = _epoch_case(conformance_device, conformance_path, activation,
                                            cost, "float64")
    oracle.assert_parameters_close(got, want, oracle.ATOL, what=f"{conformance_path} epoch")
    assert history[0].cost == pytest.approx(total / conformance_path.n, rel=oracle.COST_RTOL)


def test_conformance_neurons_float32_epoch_follows_the_oracle(conformance_device: Any,
                                                              conformance_path: Path) -> None:
    """A relu network with a softmax output in float32 stays within float32 rounding of the
    float64 oracle (the float32 kernels of softmax, relu and the log-likelihood)."""
    history, got, total, want = _epoch_case(conformance_device, conformance_path, "relu",
                                            LogLikelihoodCost, "float32")
    oracle.assert_float32_epoch(history[0].cost, got, total, want, conformance_path)


@pytest.mark.parametrize("activation,cost", EPOCH_NEURONS, ids=NEURON_IDS[:3])
def test_conformance_neurons_generic_loop_on_the_device(conformance_device: Any,
                                                        activation: str, cost: Any) -> None:
    """The generic epoch on this device's operations (``bias_activation``,
    ``mul_activation_prime``, ``sum_log_picked``) equals the oracle."""
    sizes, n, m = [12, 9, 6, 4], 43, 10
    X, labels, Y = oracle.batch(sizes, n, seed=4)
    net = _net(conformance_device, sizes, activation, cost)
    start, order = oracle.parameters(net), np.random.default_rng(2).permutation(n)
    total = oracle.generic_epoch(net, X, labels, m, ETA, LMBDA, order)
    want, want_total = oracle.reference_epoch(start, X, Y, m, ETA, cost, order, LMBDA,
                                              net.kinds)
    oracle.assert_parameters_close(oracle.parameters(net), want, oracle.ATOL,
                                   what="generic loop")
    assert total == pytest.approx(want_total, rel=oracle.COST_RTOL)


def test_conformance_softmax_is_stable(conformance_device: Any) -> None:
    """Softmax of huge pre-activations stays finite and sums to 1 in every column (the shifted
    exponent), and the log-likelihood of a confident wrong answer stays finite (clipped log)."""
    net = _net(conformance_device, [2, 3], "sigmoid", LogLikelihoodCost)
    net.weights = [np.array([[900.0, 0.0], [0.0, 0.0], [-900.0, 0.0]])]
    net.biases = [np.zeros((3, 1))]
    X = np.array([[1.0, -1.0], [0.0, 0.0]])
    a = net.feedforward(X)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a.sum(axis=0), 1.0, rtol=1e-12)
    cost = net.total_cost(X, np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]))
    assert np.isfinite(cost) and cost > 1000
