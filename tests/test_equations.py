"""The matrix path against the per-sample oracle, and against finite differences."""

import numpy as np
import pytest
from conftest import random_batch

import fastbp
from fastbp.core import reference

SHAPES = [[6, 4], [8, 5, 3], [12, 7, 6, 4], [10, 9, 7, 5, 3]]  # 2 to 5 layers
COSTS = [fastbp.QuadraticCost, fastbp.CrossEntropyCost]


@pytest.mark.parametrize("sizes", SHAPES)
@pytest.mark.parametrize("m", [1, 7, 64])
@pytest.mark.parametrize("cost", COSTS)
def test_backprop_matches_per_sample_loop(sizes, m, cost, rng):
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=3)
    X, Y = random_batch(rng, sizes, m)
    nb, nw = net.backprop(X, Y)
    rb, rw = reference.backprop_loop(list(net.weights), list(net.biases), X, Y, cost)
    for got, want in zip(nb + nw, rb + rw):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("sizes", [[5, 4, 3], [7, 6, 5, 4]])
def test_gradcheck(cost, sizes, rng):
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=1)
    X, Y = random_batch(rng, sizes, 9)
    assert fastbp.gradcheck(net, X, Y) < 1e-6


def test_gradcheck_detects_a_wrong_gradient(rng, monkeypatch):
    net = fastbp.Network([5, 4, 3], dtype="float64", seed=1)
    X, Y = random_batch(rng, [5, 4, 3], 4)
    real = fastbp.Network.backprop

    def broken(self, x, y):
        nb, nw = real(self, x, y)
        nw[0] = nw[0] * 1.01
        return nb, nw

    monkeypatch.setattr(fastbp.Network, "backprop", broken)
    assert fastbp.gradcheck(net, X, Y) > 1e-3


def test_feedforward_matches_oracle_and_shapes(rng):
    sizes = [784, 30, 10]
    net = fastbp.Network(sizes, dtype="float64", seed=0)
    X, _ = random_batch(rng, sizes, 5)
    out = net.feedforward(X)
    assert out.shape == (10, 5)
    for j in range(5):
        col = reference.feedforward(list(net.weights), list(net.biases), X[:, j : j + 1])
        np.testing.assert_allclose(out[:, j : j + 1], col, atol=1e-12)
    assert net.feedforward(X[:, :1]).shape == (10, 1)


def test_training_epoch_matches_reference_sgd(rng):
    """One epoch of the fast path equals the book's per-sample SGD with the same order."""
    sizes = [20, 8, 5]
    X, Y = random_batch(rng, sizes, 50)
    net = fastbp.Network(sizes, dtype="float64", seed=5)
    W, B = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    net.train(X, Y, epochs=1, batch_size=7, eta=0.5, shuffle=False)
    reference.sgd_epoch(W, B, X, Y, batch_size=7, eta=0.5)
    for got, want in zip(list(net.weights) + list(net.biases), W + B):
        np.testing.assert_allclose(got, want, atol=1e-10)


def test_cost_values_match_book_definitions(rng):
    a = rng.random((10, 6)) * 0.98 + 0.01
    y = np.eye(10)[:, rng.integers(0, 10, 6)]
    assert fastbp.QuadraticCost.fn(a, y) == pytest.approx(
        sum(0.5 * np.linalg.norm(a[:, j] - y[:, j]) ** 2 for j in range(6)))
    ce = -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))
    assert fastbp.CrossEntropyCost.fn(a, y) == pytest.approx(ce)
    be = fastbp.NumpyBackend("float64")
    for cost, want in ((fastbp.QuadraticCost, fastbp.QuadraticCost.fn(a, y)),
                       (fastbp.CrossEntropyCost, ce)):
        out, scratch = np.empty_like(a), np.empty_like(a)
        assert float(cost.output_error(be, a, y, out, scratch)) == pytest.approx(want)


def test_cross_entropy_finite_at_saturated_outputs():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert np.isfinite(fastbp.CrossEntropyCost.fn(a, y))
    be = fastbp.NumpyBackend("float64")
    assert np.isfinite(float(fastbp.CrossEntropyCost.output_error(
        be, a, y, np.empty_like(a), np.empty_like(a))))
