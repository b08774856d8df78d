"""Hyperparameters and shapes are checked once, at the API boundary: every public function's
arguments with a bad value give a ``FastbpError`` subclass whose message names the value.

``tests/test_bad_input.py`` covers shapes, labels, NaN, eta, batch_size, epochs, sizes, init,
cost, dtype and device; this file covers the remaining arguments, and that the checks do not
run inside the training loop.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import fastbp
from fastbp import ConfigError, DataError, DeviceError, ModelFormatError, ShapeError
from fastbp.core import validate
from fastbp.data.mnist_loader import vectorized_result
from fastbp.datasets import load_mnist
from fastbp.devices import registry as devices

SIZES = [4, 3, 2]
X = np.random.default_rng(0).random((4, 6))
LABELS = np.array([0, 1, 0, 1, 0, 1])
Y = np.eye(2)[:, LABELS]
PAIRS = [(X[:, [i]], Y[:, [i]]) for i in range(6)]
TEST_PAIRS = [(X[:, [i]], int(LABELS[i])) for i in range(6)]


def net(dtype: str = "float32") -> fastbp.Network:
    return fastbp.Network(SIZES, seed=0, dtype=dtype)


def train(**kw: Any) -> Callable[[], Any]:
    args = dict(epochs=1, batch_size=2, eta=1.0)
    args.update(kw)
    return lambda: net().train(X, LABELS, **args)


CASES: dict[str, tuple[Callable[[], Any], type, str]] = {
    # Network(...)
    "seed a string": (lambda: fastbp.Network(SIZES, seed="abc"), ConfigError,
                      "seed must be None or an integer >= 0, got 'abc'"),
    "seed negative": (lambda: fastbp.Network(SIZES, seed=-1), ConfigError, "got -1"),
    "seed a float": (lambda: fastbp.Network(SIZES, seed=1.5), ConfigError, "got 1.5"),
    # train(...)
    "shuffle a string": (train(shuffle="no"), ConfigError,
                         "shuffle must be True or False, got 'no'"),
    "verbose a number": (train(verbose=2), ConfigError, "verbose must be True or False, got 2"),
    "callback not callable": (train(callback=5), ConfigError,
                              "callback must be a function or None, got 5"),
    "progress not callable": (train(progress="x"), ConfigError,
                              "progress must be a function or None, got 'x'"),
    "on_diverge unknown": (train(on_diverge="ignore"), ConfigError,
                           "on_diverge must be one of .*got 'ignore'"),
    "lmbda nan": (train(lmbda=float("nan")), ConfigError, "lmbda must be a finite number, got nan"),
    "eta complex": (train(eta=1j), ConfigError, "eta must be a finite number, got 1j"),
    "eta bool": (train(eta=True), ConfigError, "eta must be a finite number, got True"),
    "epochs a float": (train(epochs=1.0), ConfigError, "epochs must be an integer, got 1.0"),
    "test a dict": (train(test={"X": X}), ConfigError, r"test must be a pair \(X_test, labels\)"),
    "labels strings": (lambda: net().train(X, np.array(list("abcdef")), epochs=1, batch_size=2,
                                           eta=1.0),
                       ShapeError, "Y must be integers, got dtype <U1"),
    # SGD, update_mini_batch, evaluate (the book's API)
    "SGD data None": (lambda: net().SGD(None, 1, 2, 1.0), ShapeError,
                      r"training_data must be a list of \(x, y\) pairs, got NoneType"),
    "SGD data an int": (lambda: net().SGD(5, 1, 2, 1.0), ShapeError, "got int"),
    "SGD epochs -1": (lambda: net().SGD(PAIRS, -1, 2, 1.0), ConfigError,
                      "epochs must be >= 0, got -1"),
    "SGD mini batch 0": (lambda: net().SGD(PAIRS, 1, 0, 1.0), ConfigError,
                         "batch_size must be >= 1, got 0"),
    "SGD test label str": (lambda: net().SGD(PAIRS, 1, 2, 1.0, test_data=[(X[:, [0]], "a")]),
                           ShapeError, "test labels must be integers, got dtype <U1"),
    "SGD evaluation_data an int": (lambda: net().SGD(PAIRS, 1, 2, 1.0, evaluation_data=5,
                                                     monitor_evaluation_accuracy=True),
                                   ShapeError, "evaluation_data must be a list of .* got int"),
    "SGD early stopping -1": (lambda: net().SGD(PAIRS, 1, 2, 1.0, lmbda=0.0, early_stopping_n=-1),
                              ConfigError, "early_stopping_n must be >= 0, got -1"),
    "update_mini_batch None": (lambda: net().update_mini_batch(None, 1.0), ShapeError,
                               "mini_batch must be a list of .* got NoneType"),
    "update_mini_batch eta str": (lambda: net().update_mini_batch(PAIRS, "1"), ConfigError,
                                  "eta must be a finite number, got '1'"),
    "evaluate None": (lambda: net().evaluate(None), ShapeError,
                      "test_data must be a list of .* got NoneType"),
    "evaluate a fractional label": (lambda: net().evaluate([(X[:, [0]], 0.5)]), ShapeError,
                                    "labels must be integers, got non-integer values"),
    # backprop, feedforward, predict, total_cost, accuracy
    "backprop labels for y": (lambda: net().backprop(X, LABELS), ShapeError,
                              r"y has shape \(6,\); expected \(2, 6\)"),
    "feedforward complex": (lambda: net().feedforward(np.zeros((4, 2), complex)), ShapeError,
                            "a must hold real numbers, got dtype complex128"),
    "feedforward None": (lambda: net().feedforward(None), ShapeError, r"a has shape \(\)"),
    "predict wrong rows": (lambda: net().predict(np.zeros((5, 2))), ShapeError,
                           r"a has shape \(5, 2\)"),
    "total_cost labels": (lambda: net().total_cost(X, LABELS), ShapeError, r"Y has shape \(6,\)"),
    "accuracy None labels": (lambda: net().accuracy(X, None), ShapeError, r"labels has shape \(\)"),
    # parameters
    "weights = None": (lambda: setattr(net(), "weights", None), ShapeError,
                       "weights must be a list of arrays, got NoneType"),
    "biases = 5": (lambda: setattr(net(), "biases", 5), ShapeError,
                   "biases must be a list of arrays, got int"),
    # gradcheck
    "gradcheck eps 0": (lambda: fastbp.gradcheck(net("float64"), X, Y, eps=0), ConfigError,
                        "eps must be > 0, got 0"),
    "gradcheck eps nan": (lambda: fastbp.gradcheck(net("float64"), X, Y, eps=float("nan")),
                          ConfigError, "eps must be a finite number, got nan"),
    "gradcheck max_entries 0": (lambda: fastbp.gradcheck(net("float64"), X, Y, max_entries=0),
                                ConfigError, "max_entries must be >= 1, got 0"),
    "gradcheck floor -1": (lambda: fastbp.gradcheck(net("float64"), X, Y, floor=-1.0),
                           ConfigError, "floor must be > 0, got -1.0"),
    "gradcheck seed": (lambda: fastbp.gradcheck(net("float64"), X, Y, seed="x"), ConfigError,
                       "seed must be None or an integer >= 0, got 'x'"),
    "gradcheck not a network": (lambda: fastbp.gradcheck(None, X, Y), ConfigError,
                                "gradcheck checks a fastbp.Network, got NoneType"),
    "gradcheck X strings": (lambda: fastbp.gradcheck(net("float64"), np.full((4, 6), "a"), Y),
                            ShapeError, "X must hold real numbers, got dtype <U1"),
    "gradcheck Y labels": (lambda: fastbp.gradcheck(net("float64"), X, LABELS), ShapeError,
                           r"Y has shape \(6,\); expected \(2, 6\)"),
    # data
    "load_mnist dtype int8": (lambda: load_mnist(dtype="int8", download=False), ConfigError,
                              "dtype 'int8' is not supported"),
    "load_mnist path an int": (lambda: load_mnist(5, download=False), ConfigError,
                               "path must be a directory .* got 5"),
    "vectorized_result 10": (lambda: vectorized_result(10), ConfigError,
                             "needs a digit 0..9, got 10"),
    "vectorized_result -1": (lambda: vectorized_result(-1), ConfigError, "got -1"),
    "vectorized_result str": (lambda: vectorized_result("3"), ConfigError, "got '3'"),
    # devices
    "use_device an int": (lambda: fastbp.use_device(5).__enter__(), DeviceError,
                          "a device is a string like 'cpu' or 'cuda:0', not 5"),
    "use_device spaces": (lambda: fastbp.use_device("cu da").__enter__(), DeviceError,
                          "malformed device string 'cu da'"),
    "register_backend name an int": (lambda: fastbp.register_backend(5, fastbp.NumpyBackend),
                                     DeviceError, "backend name 5 is not valid"),
    "register_backend name 'auto'": (lambda: fastbp.register_backend("auto", fastbp.NumpyBackend),
                                     DeviceError, "backend name 'auto' is not valid"),
    "register_backend factory 5": (lambda: fastbp.register_backend("five", 5), DeviceError,
                                   "backend 'five': the factory must be .* got 5"),
    "to an unknown device": (lambda: net().to("tpu"), DeviceError, "unknown device 'tpu'"),
    "NumpyBackend int dtype": (lambda: fastbp.NumpyBackend(dtype="int8"), ConfigError,
                               "dtype 'int8' is not supported"),
    # checkpoints
    "save to None": (lambda: net().save(None), ConfigError,
                     "a model path is a str or os.PathLike, got None"),
    "load None": (lambda: fastbp.load(None), ConfigError,
                  "a model path is a str or os.PathLike, got None"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument(case: str) -> None:
    call, error, says = CASES[case]
    with pytest.raises(error, match=says):
        call()


def test_every_case_names_a_fastbp_error() -> None:
    assert all(issubclass(error, fastbp.FastbpError) for _, error, _ in CASES.values())


def test_save_over_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="it is a directory"):
        net().save(tmp_path)


def test_load_onto_an_unknown_device(tmp_path: Path) -> None:
    path = net().save(tmp_path / "m.npz")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        fastbp.load(path, device="tpu")


def test_load_mnist_from_a_directory_without_it(tmp_path: Path, monkeypatch) -> None:
    # path, then $FASTBP_DATA, then the cache: none of them may hold MNIST here
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        load_mnist(tmp_path, download=False)


@pytest.fixture
def registry():
    saved = dict(devices._registered)
    yield
    devices._registered.clear()
    devices._registered.update(saved)


def test_a_refused_registration_registers_nothing(registry) -> None:
    with pytest.raises(DeviceError):
        fastbp.register_backend("five", 5)
    assert "five" not in fastbp.backend_names()


def test_checks_run_once_per_call_not_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The argument checks cost the same for 1 epoch of 3 steps as for 6 epochs of 60 steps."""
    import fastbp.model.network as network

    calls = {"n": 0}
    for name in ("check_batch", "check_labels", "check_targets", "check_positive", "check_count",
                 "check_finite", "check_flag", "check_callable"):
        real = getattr(validate, name)

        def counted(*a: Any, _real: Callable = real, **k: Any) -> Any:
            calls["n"] += 1
            return _real(*a, **k)

        monkeypatch.setattr(network, name, counted, raising=False)
    rng = np.random.default_rng(1)
    counts = []
    for epochs, n, batch_size in ((1, 6, 2), (6, 60, 1)):
        calls["n"] = 0
        Xb, lab = rng.random((4, n)), rng.integers(0, 2, n)
        net().train(Xb, lab, epochs=epochs, batch_size=batch_size, eta=0.5, test=(Xb, lab))
        counts.append(calls["n"])
    assert counts[0] == counts[1] and counts[0] > 0


def test_evaluate_refuses_what_is_not_a_network_and_a_bad_chunk():
    X = np.zeros((4, 3))
    with pytest.raises(fastbp.ConfigError, match="needs a fastbp.Network, got NoneType"):
        fastbp.evaluate(None, X, [0, 1, 0])
    net = fastbp.Network([4, 2])
    with pytest.raises(fastbp.ConfigError, match="chunk must be >= 1, got 0"):
        fastbp.evaluate(net, X, [0, 1, 0], chunk=0)


@pytest.mark.parametrize("sizes", [[True, 2], [784, False, 10]])
def test_booleans_are_not_layer_sizes(sizes):
    with pytest.raises(fastbp.ConfigError, match="list of integers"):
        fastbp.Network(sizes)


def test_dtype_none_is_refused_not_float64():
    with pytest.raises(fastbp.ConfigError, match="dtype must be one of .* got None"):
        fastbp.Network([4, 2], dtype=None)
