"""The suite's checks of a device's behaviour around the math: its name, arrays of another
device refused with the fix, out of memory as a clear ``DeviceError``, and the save/load round
trip. Each test takes ``conformance_device`` (see :mod:`fastbp.testing.conformance`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..core.costs import CrossEntropyCost
from ..devices import registry
from ..errors import DeviceError
from ..model.persist import load
from . import oracle

HUGE = 5_000_000  # hidden units and batch size whose work buffers no machine can allocate


class ForeignArray:
    """An array on an accelerator no device here runs on (DLPack device type 14, oneAPI): it
    converts to NumPy if asked, so a device that does not check would take it silently."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = np.asarray(a)
        self.shape, self.dtype, self.ndim = self._a.shape, self._a.dtype, self._a.ndim

    def __dlpack_device__(self) -> tuple[int, int]:
        return (14, 0)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._a if dtype is None else self._a.astype(dtype)

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, key: Any) -> Any:
        return self._a[key]


def test_conformance_device_is_found_by_name(conformance_device: Any) -> None:
    """The device string resolves to this device, in code and through ``use_device``."""
    name = conformance_device.name
    net = conformance_device.network([3, 2])
    assert net.device.split(":")[0] == name.split(":")[0]
    info = net.backend.describe()
    assert info["name"] == net.backend.name and info["kind"] in ("cpu", "gpu")
    with registry.use_device(name):
        assert registry.resolve(None, "float32").device == net.device


def test_conformance_refuses_arrays_of_another_device(conformance_device: Any) -> None:
    """An array that lives on another device is refused at every entry point with a
    ``DeviceError`` that names both devices and how to move one; nothing changes."""
    sizes = [4, 3, 2]
    net = conformance_device.network(sizes)
    X, labels, Y = oracle.batch(sizes, 6)
    before = oracle.parameters(net)
    calls = {
        "feedforward": lambda: net.feedforward(ForeignArray(X)),
        "backprop x": lambda: net.backprop(ForeignArray(X), Y),
        "backprop y": lambda: net.backprop(X, ForeignArray(Y)),
        "train X": lambda: net.train(ForeignArray(X), labels, epochs=1, batch_size=2, eta=1.0),
        "train Y": lambda: net.train(X, ForeignArray(Y), epochs=1, batch_size=2, eta=1.0),
        "test set": lambda: net.train(X, labels, epochs=1, batch_size=2, eta=1.0,
                                      test=(ForeignArray(X), labels)),
        "accuracy": lambda: net.accuracy(ForeignArray(X), labels),
    }
    for what, call in calls.items():
        with pytest.raises(DeviceError) as info:
            call()
        msg = str(info.value)
        assert "oneapi:0" in msg and net.device in msg, f"{what}: {msg}"
        assert re.search(r"\bmove\b|net\.to\(", msg), f"{what} does not say how: {msg}"
        oracle.assert_parameters_close(oracle.parameters(net), before, 0.0, what=what)


def test_conformance_out_of_memory_is_a_clear_device_error(conformance_device: Any,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A batch whose work buffers cannot be allocated (200 TB) raises a ``DeviceError`` that
    names the device, what was asked, what the device says is free and a batch size to try,
    in training and in feedforward; the network is unchanged."""
    net = conformance_device.network([1, HUGE, 1])
    free = 4_000_000_000
    monkeypatch.setattr(net.backend, "free_bytes", lambda: free)
    X = np.zeros((1, HUGE))
    before = np.array(net.weights[1])
    for what, call in {
        "train": lambda: net.train(X, np.zeros(HUGE, np.int64), epochs=1, batch_size=HUGE,
                                   eta=1.0, shuffle=False),
        "feedforward": lambda: net.feedforward(X),
    }.items():
        with pytest.raises(DeviceError) as info:
            call()
        msg = str(info.value)
        assert f"out of memory on {net.device}" in msg, f"{what}: {msg}"
        assert f"({free:,} bytes) is free" in msg, f"{what}: {msg}"
        assert re.search(r"batch of [\d,]+ samples.*smaller batch_size \(about [\d,]+", msg), msg
        assert isinstance(info.value.__cause__, MemoryError), what
    assert np.array_equal(np.array(net.weights[1]), before), "a failed call changed W"


def test_conformance_save_and_load_round_trip(conformance_device: Any, tmp_path: Path) -> None:
    """``Network.save`` then ``fastbp.load`` on the device gives back the parameters to the bit,
    the cost, dtype, init, history and random state: the next epoch of both is identical."""
    sizes = [6, 5, 3]
    X, labels, _ = oracle.batch(sizes, 40, seed=5)
    net = conformance_device.network(sizes, cost=CrossEntropyCost, dtype="float32",
                                     init="scaled")
    net.train(X, labels, epochs=2, batch_size=7, eta=0.5, lmbda=1.0, test=(X, labels))
    path = net.save(tmp_path / "model.npz")
    back = load(path, device=conformance_device.name)
    assert (back.device, back.sizes, back.dtype, back.init) == (net.device, sizes, "float32",
                                                                "scaled")
    assert back.cost is CrossEntropyCost
    assert [(r.epoch, r.cost, r.correct) for r in back.history] == \
        [(r.epoch, r.cost, r.correct) for r in net.history]
    for a, b in zip([*net.weights, *net.biases], [*back.weights, *back.biases]):
        np.testing.assert_array_equal(np.array(b), np.array(a))
    for each in (net, back):
        each.train(X, labels, epochs=1, batch_size=7, eta=0.5, lmbda=1.0)
    for a, b in zip([*net.weights, *net.biases], [*back.weights, *back.biases]):
        np.testing.assert_array_equal(np.array(b), np.array(a))
    on_cpu = load(path, device="cpu")
    np.testing.assert_array_equal(np.array(on_cpu.weights[0]),
                                  np.array(load(path, device=conformance_device.name).weights[0]))
