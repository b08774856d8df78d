"""The suite's checks of chapter 3's training techniques: momentum, L1 beside L2, and dropout
(:mod:`fastbp.core.dropout`). Held to the per-sample oracle (:func:`fastbp.core.reference.sgd_epoch`
with velocities and the same masks) on every path of the device's own epoch, in float64 and
float32, and the gradient under a fixed dropout mask to central differences. Each test takes
``conformance_device``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from ..core import dropout, neurons, reference
from ..core.costs import CrossEntropyCost, LogLikelihoodCost
from . import oracle
from .paths import Path

ETA, LMBDA = 0.3, 4.0
# (name, train's keywords): each technique alone, then all at once
TECHNIQUES = [
    ("momentum", {"momentum": 0.9}),
    ("l1", {"l1": 3.0}),
    ("dropout", {"dropout": 0.5}),
    ("all", {"momentum": 0.6, "l1": 1.0, "dropout": 0.3}),
]
IDS = [name for name, _ in TECHNIQUES]


def _terms(path: Path, epochs: int = 2) -> float:
    """The float32 rounding terms of :func:`_case`'s training with all three techniques (the
    step, weight decay, the velocity and the L1 term round each weight)."""
    return oracle.training_terms(path.sizes, path.batch_size, path.n, epochs,
                                 TECHNIQUES[-1][1]["momentum"], roundings=4)


def _draws(net: Any, n: int, epochs: int, with_dropout: bool) -> list[tuple[np.ndarray, int]]:
    """The ``(order, mask seed)`` of ``net``'s next epochs (its generator is not advanced)."""
    rng = copy.deepcopy(net.rng)
    draws = []
    for _ in range(epochs):
        order = rng.permutation(n)
        draws.append((order, int(rng.integers(1 << 32)) if with_dropout else 0))
    return draws


def _oracle(net: Any, start: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch_size: int,
            draws: list[tuple[np.ndarray, int]], kw: dict[str, float]) -> list[np.ndarray]:
    """The per-sample oracle's parameters after the epochs ``draws`` from ``start``."""
    L = len(start) // 2
    W, B = [p.copy() for p in start[:L]], [p.copy() for p in start[L:]]
    velocities = [np.zeros_like(p) for p in start] if kw.get("momentum") or kw.get("l1") \
        else None
    for order, seed in draws:
        reference.sgd_epoch(W, B, X, Y, batch_size, ETA, net.cost, order, LMBDA, n=X.shape[1],
                            kinds=net.kinds, mu=kw.get("momentum", 0.0), l1=kw.get("l1", 0.0),
                            dropout_p=kw.get("dropout", 0.0), seed=seed, velocities=velocities)
    return W + B


def _case(device: Any, path: Path, kw: dict[str, float], dtype: str, epochs: int = 2,
          terms: list[float] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``path``'s workload trained ``epochs`` epochs on ``device`` and by the oracle: the
    device's parameters and the oracle's. ``terms``, when given, receives the float32 rounding
    terms of the training (:func:`_terms`, magnified as the oracle magnifies a rounding)."""
    sizes = path.sizes if len(path.sizes) > 2 else (*path.sizes[:1], 6, *path.sizes[1:])
    X, labels, Y = oracle.batch(sizes, path.n, seed=path.n)
    net = device.network(sizes, cost=LogLikelihoodCost, dtype=dtype, init="scaled",
                         activation="relu")
    start, draws = oracle.parameters(net), _draws(net, path.n, epochs, "dropout" in kw)
    Xd = X.astype(dtype)
    net.train(Xd, labels, epochs=epochs, batch_size=path.batch_size, eta=ETA, lmbda=LMBDA, **kw)
    X64 = Xd.astype(np.float64)
    want = _oracle(net, start, X64, Y, path.batch_size, draws, kw)
    if terms is not None:
        terms.append(_terms(path, epochs) * oracle.amplification(
            lambda p: _oracle(net, p, X64, Y, path.batch_size, draws, kw), start))
    return oracle.parameters(net), want


@pytest.mark.parametrize("name,kw", TECHNIQUES, ids=IDS)
def test_conformance_techniques_epochs_match_the_oracle(conformance_device: Any,
                                                        conformance_path: Path, name: str,
                                                        kw: dict[str, float]) -> None:
    """Two shuffled float64 epochs with L2 and momentum, L1 or dropout (the device's own epoch,
    on each path) equal the per-sample oracle with the same velocities and masks, to 1e-10."""
    got, want = _case(conformance_device, conformance_path, kw, "float64")
    oracle.assert_parameters_close(got, want, oracle.ATOL, what=f"{conformance_path} {name}")


def test_conformance_techniques_float32_follow_the_oracle(conformance_device: Any,
                                                          conformance_path: Path) -> None:
    """Momentum, L1 and dropout at once in float32 stay within float32 rounding of the float64
    oracle: the device draws the masks the oracle draws."""
    terms: list[float] = []
    got, want = _case(conformance_device, conformance_path, TECHNIQUES[-1][1], "float32",
                      terms=terms)
    oracle.assert_float32_close(got, want, terms[0], what=f"{conformance_path} float32")


@pytest.mark.parametrize("name,kw", TECHNIQUES, ids=IDS)
def test_conformance_techniques_generic_loop_on_the_device(conformance_device: Any, name: str,
                                                           kw: dict[str, float]) -> None:
    """The generic epoch on this device's operations (``velocity_update``, ``dropout_mask``,
    ``multiply``) equals the oracle."""
    from ..core import epoch as generic

    sizes, n, m = [12, 9, 6, 4], 43, 10
    X, labels, Y = oracle.batch(sizes, n, seed=4)
    net = conformance_device.network(sizes, cost=CrossEntropyCost, init="scaled",
                                     activation="tanh")
    start = oracle.parameters(net)
    draws = [(np.random.default_rng(2).permutation(n), 12345)]
    plan = net.epoch_plan(X, labels, batch_size=m, eta=ETA, lmbda=LMBDA, **kw)
    be = net.backend
    with be.activate():
        plan.start(be.index_array(draws[0][0]), draws[0][1])
        generic.sgd_epoch(be, plan)
    want = _oracle(net, start, X, Y, m, draws, kw)
    oracle.assert_parameters_close(oracle.parameters(net), want, oracle.ATOL,
                                   what=f"generic loop, {name}")


def _masked_cost(W: list[np.ndarray], B: list[np.ndarray], X: np.ndarray, Y: np.ndarray,
                 kinds: tuple[str, ...], masks: list[np.ndarray], cost: Any) -> float:
    a = X
    for l, (w, b, kind) in enumerate(zip(W, B, kinds)):
        a = neurons.apply(kind, w @ a + b) * (masks[l] if l < len(masks) else 1.0)
    return cost.fn(a, Y)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_conformance_dropout_gradient_agrees_with_central_differences(
        conformance_device: Any, activation: str) -> None:
    """One full-batch step with dropout moves every ``W^l`` and ``b^l`` by ``−η ∂C/∂p / m``,
    where ``C`` is the cost of the network with the step's masks: checked against central
    differences of that cost (``ε = 10⁻⁶``), relative error below 1e-6."""
    sizes, m, p, seed = [5, 7, 6, 3], 8, 0.4, 99
    X, labels, Y = oracle.batch(sizes, m, seed=7)
    net = conformance_device.network(sizes, cost=LogLikelihoodCost, init="scaled",
                                     activation=activation)
    start = oracle.parameters(net)
    L = len(start) // 2
    plan = net.epoch_plan(X, labels, batch_size=m, eta=ETA, dropout=p)
    order = np.arange(m)
    be = net.backend
    with be.activate():
        plan.start(be.index_array(order), seed)
        from ..core.epoch import run_epoch

        run_epoch(be, plan)
    step = [(a - b) * m / ETA for a, b in zip(start, oracle.parameters(net))]
    masks = [dropout.mask(dropout.step_key(seed, 0, l), p, sizes[l + 1], m) for l in range(L - 1)]
    W, B = [a.copy() for a in start[:L]], [a.copy() for a in start[L:]]
    eps, worst = 1e-6, 0.0
    for arrays, grads in ((W, step[:L]), (B, step[L:])):
        for a, g in zip(arrays, grads):
            num = np.zeros_like(a)
            for i in np.ndindex(a.shape):
                keep = a[i]
                a[i] = keep + eps
                up = _masked_cost(W, B, X, Y, net.kinds, masks, net.cost)
                a[i] = keep - eps
                down = _masked_cost(W, B, X, Y, net.kinds, masks, net.cost)
                a[i] = keep
                num[i] = (up - down) / (2 * eps)
            worst = max(worst, float(np.linalg.norm(g - num) /
                                     max(np.linalg.norm(g) + np.linalg.norm(num), 1e-30)))
    assert worst < 1e-6
