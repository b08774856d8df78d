"""The ``array-api`` device on array-api-strict: the conformance suite (oracle, gradient check,
every path of the epoch, ...), then what is its own: namespaces, devices, the round trip."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.core import reference
from fastbp.testing import conformance

xp = pytest.importorskip("array_api_strict")
fastbp_array_api = pytest.importorskip("fastbp_array_api")

conformance.install(globals(), device="array-api")


def batch(rng: np.random.Generator, sizes: list[int], m: int) -> tuple[np.ndarray, np.ndarray]:
    X = rng.random((sizes[0], m))
    Y = np.zeros((sizes[-1], m))
    Y[rng.integers(0, sizes[-1], m), np.arange(m)] = 1.0
    return X, Y


@pytest.fixture(autouse=True)
def strict_namespace(monkeypatch):
    monkeypatch.delenv("FASTBP_ARRAY_API", raising=False)
    monkeypatch.delenv("FASTBP_DEVICE", raising=False)


def test_the_plugin_is_found_through_its_entry_point():
    assert "array-api" in fastbp.backend_names()
    net = fastbp.Network([3, 2], device="array-api")
    assert isinstance(net.backend, fastbp_array_api.ArrayAPIBackend)
    assert net.backend.ns is xp
    assert isinstance(net._weights[0], xp.asarray(0.0).__class__)


def test_trains_a_small_network_like_the_cpu_does():
    """Two Gaussian blobs: accuracy climbs, and every epoch matches the cpu device."""
    rng = np.random.default_rng(11)
    n = 200
    labels = rng.integers(0, 2, n)
    X = rng.normal(0.0, 0.5, (4, n)) + np.where(labels, 1.0, -1.0)
    runs = {}
    for device in ("array-api", "cpu"):
        net = fastbp.Network([4, 6, 2], dtype="float64", seed=9, device=device)
        history = net.train(X, labels, epochs=5, batch_size=10, eta=2.0, test=(X, labels),
                            lmbda=0.01)
        runs[device] = (net, history)
    net, history = runs["array-api"]
    assert history[-1].accuracy > 0.95
    assert history[-1].cost < history[0].cost
    cpu_net, cpu_history = runs["cpu"]
    assert [r.correct for r in history] == [r.correct for r in cpu_history]
    for a, b in zip(list(net.weights) + list(net.biases),
                    list(cpu_net.weights) + list(cpu_net.biases)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_float32_and_the_round_trip_to_cpu():
    rng = np.random.default_rng(3)
    net = fastbp.Network([5, 4, 3], seed=1, device="array-api")
    X, Y = batch(rng, [5, 4, 3], 12)
    net.train(X, Y, epochs=1, batch_size=4, eta=1.0)
    assert net.weights[0].dtype == np.float32
    cpu = net.to("cpu")
    assert cpu.device == "cpu" and isinstance(cpu._weights[0], np.ndarray)
    np.testing.assert_array_equal(cpu.weights[0], net.weights[0])
    np.testing.assert_allclose(cpu.feedforward(X), net.feedforward(X), atol=1e-6)
    back = cpu.to("array-api")
    np.testing.assert_array_equal(back.biases[1], net.biases[1])


def test_weights_read_as_read_only_numpy_copies():
    net = fastbp.Network([3, 2], dtype="float64", seed=1, device="array-api")
    w = net.weights[0]
    assert isinstance(w, np.ndarray)
    with pytest.raises(fastbp.ConfigError, match="read-only"):
        w[...] = 123.0
    assert not np.any(net.weights[0] == 123.0)


def test_namespace_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("FASTBP_ARRAY_API", "numpy")
    net = fastbp.Network([4, 3, 2], dtype="float64", seed=1, device="array-api")
    assert net.backend.ns is np
    X, Y = batch(np.random.default_rng(0), [4, 3, 2], 5)
    nb, nw = net.backprop(X, Y)
    rb, rw = reference.backprop_loop(list(net.weights), list(net.biases), X, Y)
    np.testing.assert_allclose(nw[0], rw[0], atol=1e-12)


def test_namespace_given_in_code():
    be = fastbp_array_api.ArrayAPIBackend(dtype="float64", namespace="numpy")
    net = fastbp.Network([3, 2], dtype="float64", device=be)
    assert net.backend is be and net.device == "array-api"


def test_unknown_namespace_is_a_device_error(monkeypatch):
    monkeypatch.setenv("FASTBP_ARRAY_API", "no_such_array_library")
    with pytest.raises(fastbp.DeviceError, match="no_such_array_library.*FASTBP_ARRAY_API"):
        fastbp.Network([3, 2], device="array-api")


def test_device_index_out_of_range_says_how_many():
    n = len(xp.__array_namespace_info__().devices())
    with pytest.raises(fastbp.DeviceError, match=f"out of range.*has {n} device"):
        fastbp.Network([3, 2], device=f"array-api:{n + 3}")


def test_input_on_another_device_is_refused():
    """array-api-strict has several (pretend) devices; mixing them is an error, said clearly."""
    other = xp.__array_namespace_info__().devices()[1]
    net = fastbp.Network([3, 2], dtype="float64", seed=1, device="array-api")
    X = xp.asarray(np.ones((3, 4)), device=other)
    with pytest.raises(fastbp.DeviceError, match="a is on .*device1.*network is on .array-api."):
        net.feedforward(X)
    on_other = fastbp.Network([3, 2], dtype="float64", seed=1, device="array-api:1")
    assert on_other.feedforward(X).shape == (2, 4)


def test_native_inputs_are_used_where_they_are():
    net = fastbp.Network([3, 2], dtype="float64", seed=1, device="array-api")
    X = np.random.default_rng(0).random((3, 4))
    np.testing.assert_allclose(net.feedforward(xp.asarray(X)), net.feedforward(X), atol=0)


def test_fastbp_devices_lists_the_plugin(capsys):
    from fastbp.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "array-api [plugin fastbp-array-api" in out
    assert "array_api_strict" in out
