"""The suite's checks of the math: backprop and whole epochs against the per-sample oracle, on
every path (:mod:`fastbp.testing.paths`), with and without L2; the gradient check; the float32
σ to a few ulp. Each test takes ``conformance_device`` (see :mod:`fastbp.testing.conformance`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ..core import reference
from ..core.costs import CrossEntropyCost, QuadraticCost
from ..model.gradcheck import gradcheck
from . import oracle
from .paths import Path

COSTS = [QuadraticCost, CrossEntropyCost]
COST_IDS = ["quadratic", "cross-entropy"]
LMBDA = 5.0  # L2: the decay 1 − ηλ/n moves every weight far more than the tolerance
ETA = 0.5
SIGMA_ULPS = 4  # float32 σ within this many ulp of the float64 one


def _epoch_case(device: Any, path: Path, cost: Any, lmbda: float, dtype: str
                ) -> tuple[Any, list[np.ndarray], float, list[np.ndarray]]:
    """One shuffled epoch of ``path`` on ``device`` and the oracle's: the trained network, its
    parameters, the oracle's parameters and the oracle's summed cost."""
    X, labels, Y = oracle.batch(path.sizes, path.n, seed=path.n)  # one per workload
    net = device.network(path.sizes, cost=cost, dtype=dtype, init="scaled")
    start = oracle.parameters(net)
    order = oracle.next_order(net, path.n)
    Xd = X.astype(dtype)
    history = net.train(Xd, labels, epochs=1, batch_size=path.batch_size, eta=ETA, lmbda=lmbda)
    want, total = oracle.reference_epoch(start, Xd.astype(np.float64), Y, path.batch_size, ETA,
                                         cost, order, lmbda)
    return history, oracle.parameters(net), total, want


@pytest.mark.parametrize("sizes,m", [([6, 4], 1), ([8, 5, 3], 7), ([10, 9, 7, 5, 3], 7),
                                     ([100, 100, 10], 64)], ids=["1-layer", "2", "4", "wide"])
@pytest.mark.parametrize("cost", COSTS, ids=COST_IDS)
def test_conformance_backprop_matches_the_oracle(conformance_device: Any, sizes: list[int],
                                                 m: int, cost: Any) -> None:
    """``feedforward`` and ``backprop`` (BP1–BP4 summed over the batch) equal the per-sample
    loop in float64 (``wide``: 6,400 activations a layer, past the vectorised σ)."""
    net = conformance_device.network(sizes, cost=cost)
    X, _, Y = oracle.batch(sizes, m, seed=m)
    W, B = [np.array(w) for w in net.weights], [np.array(b) for b in net.biases]
    out = np.hstack([reference.feedforward(W, B, X[:, j : j + 1]) for j in range(m)])
    oracle.assert_parameters_close([net.feedforward(X)], [out], oracle.ATOL, what="a^L")
    nabla_b, nabla_w = net.backprop(X, Y)
    want_b, want_w = reference.backprop_loop(W, B, X, Y, cost)
    oracle.assert_parameters_close([*nabla_w, *nabla_b], [*want_w, *want_b], oracle.ATOL,
                                   what="backprop")


@pytest.mark.parametrize("sizes", [[5, 4, 3], [7, 6, 5, 4]], ids=["2", "3"])
@pytest.mark.parametrize("cost", COSTS, ids=COST_IDS)
def test_conformance_gradcheck(conformance_device: Any, sizes: list[int], cost: Any) -> None:
    """Backprop agrees with central differences of the cost (:func:`fastbp.gradcheck`)."""
    net = conformance_device.network(sizes, cost=cost)
    X, _, Y = oracle.batch(sizes, 9, seed=3)
    assert gradcheck(net, X, Y) < 1e-6


@pytest.mark.parametrize("lmbda", [0.0, LMBDA], ids=["plain", "L2"])
@pytest.mark.parametrize("cost", COSTS, ids=COST_IDS)
def test_conformance_epoch_matches_the_per_sample_oracle(conformance_device: Any,
                                                         conformance_path: Path, cost: Any,
                                                         lmbda: float) -> None:
    """One shuffled float64 epoch (the device's own, on each path) equals the book's
    per-sample SGD in the same order: every parameter to 1e-10, and the epoch's cost."""
    history, got, total, want = _epoch_case(conformance_device, conformance_path, cost, lmbda,
                                            "float64")
    oracle.assert_parameters_close(got, want, oracle.ATOL, what=f"{conformance_path} epoch")
    assert history[0].cost == pytest.approx(total / conformance_path.n, rel=oracle.COST_RTOL)


@pytest.mark.parametrize("cost", COSTS, ids=COST_IDS)
def test_conformance_float32_epoch_follows_the_oracle(conformance_device: Any,
                                                      conformance_path: Path,
                                                      cost: Any) -> None:
    """The same epoch in float32 (the default dtype), with L2, stays within float32 rounding
    of the float64 oracle started from the same parameters."""
    history, got, total, want = _epoch_case(conformance_device, conformance_path, cost, LMBDA,
                                            "float32")
    oracle.assert_float32_epoch(history[0].cost, got, total, want, conformance_path)


@pytest.mark.parametrize("cost", COSTS, ids=COST_IDS)
def test_conformance_generic_loop_on_the_device(conformance_device: Any, cost: Any) -> None:
    """The generic epoch (:func:`fastbp.core.epoch.sgd_epoch`), which runs where a device has
    no epoch of its own, equals the oracle on this device's operations (gather, BP1–BP4 and
    the update with L2 decay)."""
    sizes, n, m = [12, 9, 6, 4], 43, 10
    X, labels, Y = oracle.batch(sizes, n, seed=4)
    net = conformance_device.network(sizes, cost=cost)
    start, order = oracle.parameters(net), np.random.default_rng(2).permutation(n)
    total = oracle.generic_epoch(net, X, labels, m, ETA, LMBDA, order)
    want, want_total = oracle.reference_epoch(start, X, Y, m, ETA, cost, order, LMBDA)
    oracle.assert_parameters_close(oracle.parameters(net), want, oracle.ATOL,
                                   what="generic loop")
    assert total == pytest.approx(want_total, rel=oracle.COST_RTOL)


@pytest.mark.parametrize("width,m", [(64, 1), (8192, 1), (8192, 2)],
                         ids=["64x1", "8192x1", "8192x2"])
def test_conformance_float32_sigmoid_within_a_few_ulp(conformance_device: Any, width: int,
                                                      m: int) -> None:
    """float32 σ within 4 ulp of the float64 one, through the device's own epoch and its
    feedforward, on arrays below and above the vectorised pass's size.

    A one-layer network ``[1, width]`` with ``x = 1``, ``b = 0`` and ``W = z`` has ``a = σ(z)``;
    one cross-entropy step with ``η = 1`` and targets 0 leaves ``b = −σ(z)`` exactly."""
    rng = np.random.default_rng(width)
    z = np.concatenate([np.linspace(-40.0, 40.0, width // 2),
                        rng.uniform(-12.0, 12.0, width - width // 2)]).astype(np.float32)
    want = oracle.sigmoid64(z)
    net = conformance_device.network([1, width], cost=CrossEntropyCost, dtype="float32")
    net.weights, net.biases = [z.reshape(width, 1)], [np.zeros((width, 1), np.float32)]
    a = net.feedforward(np.ones((1, 1), np.float32)).reshape(-1)
    worst = int(oracle.ulps(a, want).max())
    assert worst <= SIGMA_ULPS, f"feedforward's σ is {worst} ulp from the float64 σ"
    net.train(np.ones((1, m), np.float32), np.zeros((width, m), np.float32), epochs=1,
              batch_size=m, eta=1.0, shuffle=False)
    sigma = -np.asarray(net.biases[0], dtype=np.float32).reshape(-1)
    worst = int(oracle.ulps(sigma, want).max())
    assert worst <= SIGMA_ULPS, f"the epoch's σ is {worst} ulp from the float64 σ"
