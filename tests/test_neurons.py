"""tanh and relu hidden layers, the softmax output with the log-likelihood cost: the API that
chooses them, the initialisation each gets, and the compiled device running them itself. Their
agreement with the per-sample oracle and with finite differences, on every device, is in the
conformance suite (:mod:`fastbp.testing.checks_neurons`)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import fastbp
from fastbp.core import neurons
from fastbp.testing import oracle


def test_kinds_follow_activation_and_cost():
    net = fastbp.Network([6, 5, 4, 3], activation="relu", cost="log-likelihood")
    assert net.kinds == ("relu", "relu", "softmax") and net.cost is fastbp.LogLikelihoodCost
    net = fastbp.Network([6, 5, 4, 3], activation=["tanh", "relu"], cost="cross-entropy")
    assert net.kinds == ("tanh", "relu", "sigmoid")
    assert fastbp.Network([6, 3]).kinds == ("sigmoid",)
    assert "activation=['tanh', 'relu']" in repr(
        fastbp.Network([6, 5, 4, 3], activation=["tanh", "relu"]))


@pytest.mark.parametrize("activation,says", [
    ("softmax", "unknown activation 'softmax'"), ("elu", "unknown activation"),
    (["relu"], "lists 1 kinds, but the network has 2 hidden layers"), (3, "name or a list")])
def test_bad_activations_are_refused(activation, says):
    with pytest.raises(fastbp.ConfigError, match=says):
        fastbp.Network([6, 5, 4, 3], activation=activation)


@pytest.mark.parametrize("activation,gain", [("sigmoid", 1.0), ("tanh", 1.0),
                                             ("relu", np.sqrt(2.0))])
def test_scaled_init_uses_each_neurons_gain(activation, gain):
    """``init="scaled"``: ``W ~ N(0, g²/n_in)``, ``g = √2`` for relu (He), 1 otherwise."""
    net = fastbp.Network([400, 300, 10], activation=activation, init="scaled", seed=0,
                         dtype="float64")
    std = float(np.std(net.weights[0]))
    assert std == pytest.approx(gain / np.sqrt(400), rel=0.02)
    assert float(np.std(net.weights[1])) == pytest.approx(1 / np.sqrt(300), rel=0.05)


def test_default_init():
    """The quadratic cost on sigmoid neurons keeps network.py's N(0, 1); every other network
    gets the scaled weights."""
    assert fastbp.Network([4, 3, 2]).init == "standard"
    assert fastbp.Network([4, 3, 2], activation="relu").init == "scaled"
    assert fastbp.Network([4, 3, 2], cost="log-likelihood").init == "scaled"
    assert fastbp.Network([4, 3, 2], cost="cross-entropy").init == "scaled"


def test_log_likelihood_in_the_books_form():
    """``fn(a, y) = −ln a_y`` per column, finite at ``a_y = 0``; ``delta = a − y``."""
    a = np.array([[0.7, 0.0], [0.2, 1.0], [0.1, 0.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    c = fastbp.LogLikelihoodCost
    assert np.isfinite(c.fn(a, y)) and c.fn(a[:, :1], y[:, :1]) == pytest.approx(-np.log(0.7))
    np.testing.assert_array_equal(c.delta(None, a, y), a - y)
    assert fastbp.core.costs.get_cost("loglikelihood") is c


def test_oracle_softmax_is_shifted():
    z = np.array([[1000.0], [1001.0]])
    np.testing.assert_allclose(neurons.apply("softmax", z).ravel(),
                               [1 / (1 + np.e), np.e / (1 + np.e)])


@pytest.mark.parametrize("activation,cost", [("relu", "log-likelihood"),
                                             ("tanh", "cross-entropy")])
def test_the_compiled_device_runs_them_itself(activation, cost, caplog):
    """cpu-jit runs relu/tanh and the softmax output in its own compiled epoch (no fallback to
    the cpu loop), equal to the cpu device to rounding."""
    pytest.importorskip("fastbp_numba")
    X, labels, _ = oracle.batch([12, 9, 6, 4], 60, seed=2)
    nets = [fastbp.Network([12, 9, 6, 4], activation=activation, cost=cost, device=d,
                           dtype="float64", seed=3) for d in ("cpu", "cpu-jit")]
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        for net in nets:
            net.train(X, labels, epochs=2, batch_size=7, eta=0.3, lmbda=1.0)
    assert "runs the cpu device's loop" not in caplog.text
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_linear_is_a_record_of_the_table_for_the_layers_only():
    """network3's ``linear`` (``f(z) = z``, ``f' = 1``) is one record of the neuron table: the
    layers take it, :class:`fastbp.Network` (whose dense stacks the devices compile) does not."""
    from fastbp.core.layers import ACTIVATIONS

    record = neurons.NEURONS["linear"]
    assert record.hidden and not record.output and not record.dense
    assert "linear" in ACTIVATIONS and "linear" not in neurons.HIDDEN
    z = np.linspace(-3.0, 3.0, 7).reshape(7, 1)
    np.testing.assert_array_equal(neurons.apply("linear", z), z)
    np.testing.assert_array_equal(neurons.prime("linear", z), np.ones_like(z))
    with pytest.raises(fastbp.ConfigError, match="unknown activation 'linear'"):
        fastbp.Network([6, 5, 3], activation="linear")


@pytest.mark.parametrize("device", ["cpu", "cpu-jit"])
def test_devices_take_linear_from_the_table(device):
    """A device without a kernel of its own for a kind runs the table's form: ``z ← z + b`` and
    ``x ← x ⊙ 1``, bit for bit."""
    backend = fastbp.devices.resolve(device, "float64")
    rng = np.random.default_rng(0)
    z, b, x = rng.normal(size=(5, 4)), rng.normal(size=(5, 1)), rng.normal(size=(5, 4))
    want_z, want_x = z + b, x.copy()
    got = backend.bias_activation(z.copy(), b, "linear")
    np.testing.assert_array_equal(got, want_z)
    got = backend.mul_activation_prime(x.copy(), got, "linear", np.empty_like(x))
    np.testing.assert_array_equal(got, want_x)


def test_costs_sigmoid_is_the_tables_stable_form():
    """The book's ``sigmoid`` helper is the table's σ: exact 0.5 at 0, no overflow far out, and a
    tiny σ keeps its digits (the ``(1 + tanh(z/2)) / 2`` form returns 0 there)."""
    from fastbp.core.costs import sigmoid
    from fastbp.model.network3 import sigmoid as sigmoid3

    z = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise"):
        for f in (sigmoid, sigmoid3):
            s = f(z)
            np.testing.assert_array_equal(s, neurons.apply("sigmoid", z))
            assert s[2] == 0.5 and s[1] > 0.0
            np.testing.assert_allclose(s[1], np.exp(-40.0), rtol=1e-15)
