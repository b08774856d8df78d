"""Device faults: out of memory is a ``DeviceError`` saying how much was asked, what is free and
which batch size would fit; the network is unchanged and still trains afterwards."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastbp
from fastbp.core import memory
from fastbp.core.plan import Workspace
from fastbp.devices.cpu import epoch as numpy_epoch

SIZES = [20, 8, 4]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.random((SIZES[0], 300)), rng.integers(0, SIZES[-1], 300)


class FailingNumpy:
    """NumPy, except that ``empty`` raises ``MemoryError`` (as NumPy does) above ``limit`` items."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __getattr__(self, name: str):
        return getattr(np, name)

    def empty(self, shape, dtype=None, *args, **kwargs):
        if int(np.prod(shape)) > self.limit:
            raise MemoryError(f"Unable to allocate array with shape {shape}")
        return np.empty(shape, dtype, *args, **kwargs)


def fail_big_allocations(monkeypatch: pytest.MonkeyPatch, backend: fastbp.Backend,
                         limit: int) -> None:
    """Make every work-buffer allocation above ``limit`` items fail: ``backend.empty`` (the
    generic loop, feedforward) and the cpu device's own epoch loop's buffers."""
    failing = FailingNumpy(limit)
    monkeypatch.setattr(backend, "empty", lambda shape, dtype=None: failing.empty(
        shape, dtype or backend.dtype))
    monkeypatch.setattr(numpy_epoch, "np", failing)


def numbers(message: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\(([\d,]+) bytes\)", message)]


@pytest.mark.parametrize("loop", ["cpu", "generic"])
def test_forced_failure_in_train_names_asked_free_and_a_batch(data, monkeypatch, loop) -> None:
    net = fastbp.Network(SIZES, seed=2)
    if loop == "generic":  # the Backend base class's loop over fastbp.core.plan.Workspace
        monkeypatch.setattr(numpy_epoch, "applies", lambda plan: False)
    before = [*net.weights, *net.biases]
    fail_big_allocations(monkeypatch, net.backend, limit=SIZES[0] * 100)  # batches > 100 fail
    with pytest.raises(fastbp.DeviceError) as info:
        net.train(*data, epochs=1, batch_size=300, eta=1.0)
    msg = str(info.value)
    assert "out of memory on cpu" in msg and "a batch of 300 samples" in msg
    asked = memory.workspace_bytes(SIZES, 300, 4)
    assert f"({asked:,} bytes)" in msg and "is free" in msg
    assert re.search(r"smaller batch_size \(about [\d,]+ or less", msg)
    assert isinstance(info.value.__cause__, MemoryError)
    for a, b in zip(before, [*net.weights, *net.biases]):
        np.testing.assert_array_equal(a, b)  # no step was taken
    history = net.train(*data, epochs=2, batch_size=50, eta=1.0)  # still usable
    assert len(history) == 2 and np.isfinite(history[-1].cost)
    assert net.feedforward(data[0][:, :5]).shape == (SIZES[-1], 5)


class OutOfMemoryError(MemoryError):
    """Like ``cupy.cuda.memory.OutOfMemoryError``, which is a ``MemoryError`` too."""

    def __init__(self, size: int, total: int) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} "
                         "bytes).")


def test_cupys_out_of_memory_error_is_translated(data, monkeypatch) -> None:
    """What the cuda device raises when a batch does not fit: the same DeviceError."""
    net = fastbp.Network(SIZES, seed=2)
    real = net.backend.empty

    def empty(shape, dtype=None):
        if int(np.prod(shape)) > SIZES[0] * 100:
            raise OutOfMemoryError(int(np.prod(shape)) * 4, 123_456)
        return real(shape, dtype)

    monkeypatch.setattr(numpy_epoch, "applies", lambda plan: False)
    monkeypatch.setattr(net.backend, "empty", empty)
    with pytest.raises(fastbp.DeviceError, match="a batch of 300 samples.*smaller batch_size"):
        net.train(*data, epochs=1, batch_size=300, eta=1.0)
    assert len(net.train(*data, epochs=1, batch_size=100, eta=1.0)) == 1


@pytest.mark.parametrize("which", ["training", "test"])
def test_forced_failure_moving_the_data(data, monkeypatch, which: str) -> None:
    net = fastbp.Network(SIZES, seed=2)
    X, labels = data
    Xt = X[:, :250]
    real = net.backend.asarray

    def asarray(a, dtype=None):
        if np.shape(a) == ((300, SIZES[0]) if which == "training" else (250, SIZES[0])):
            raise MemoryError("Unable to allocate")
        return real(a, dtype)

    monkeypatch.setattr(net.backend, "asarray", asarray)
    n = 300 if which == "training" else 250
    with pytest.raises(fastbp.DeviceError, match=f"the {which} set \\({n} samples\\).*fewer "
                                                 "samples per call"):
        net.train(X, labels, epochs=1, batch_size=10, eta=1.0, test=(Xt, labels[:250]))
    monkeypatch.undo()
    assert len(net.train(X, labels, epochs=1, batch_size=10, eta=1.0)) == 1


def test_forced_failure_in_feedforward(data, monkeypatch) -> None:
    net = fastbp.Network(SIZES, seed=2)
    fail_big_allocations(monkeypatch, net.backend, limit=SIZES[0] * 100)
    with pytest.raises(fastbp.DeviceError, match="a batch of 300 samples"):
        net.feedforward(data[0])
    assert net.feedforward(data[0][:, :100]).shape == (SIZES[-1], 100)


def test_a_real_numpy_allocation_failure() -> None:
    """A batch of 10^11 samples: NumPy itself refuses, the error says how much and what is free."""
    be = fastbp.NumpyBackend()
    with pytest.raises(fastbp.DeviceError) as info:
        Workspace(be, [784, 30, 10], 10**11)
    asked, free = numbers(str(info.value))
    assert asked == memory.workspace_bytes([784, 30, 10], 10**11, 4) and asked > 10**14
    assert 0 < free < asked
    assert "smaller batch_size" in str(info.value)


def test_a_network_too_big_to_build() -> None:
    """10^15 weights: more than the address space, so the allocation fails everywhere."""
    with pytest.raises(fastbp.DeviceError) as info:
        fastbp.Network([10**15, 1, 1])
    msg = str(info.value)
    assert "the 1,000,000,000,000,003 parameters" in msg and "fewer or smaller layers" in msg
    asked, free = numbers(msg)
    assert asked == 12 * 1_000_000_000_000_003 and free < asked


def test_a_network_too_big_for_what_is_free(monkeypatch) -> None:
    be = fastbp.NumpyBackend()
    monkeypatch.setattr(memory, "host_available", lambda: 1000)
    err = memory.out_of_memory(be, [784, 30, 10], 10)
    assert "the network itself does not fit" in str(err) and "(1,000 bytes) is free" in str(err)


def test_free_memory_is_the_hosts_only_for_arrays_in_host_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``free_bytes`` follows the ``host_memory`` flag, not the device's kind or name."""
    class OffHost(fastbp.NumpyBackend):
        kind = "cpu"
        host_memory = False

    monkeypatch.setattr(memory, "host_available", lambda: 123_456_789)
    assert fastbp.NumpyBackend().free_bytes() == 123_456_789
    assert OffHost().free_bytes() is None


def test_free_memory_reported_by_the_backend_itself() -> None:
    class Small(fastbp.NumpyBackend):
        def free_bytes(self) -> int:
            return 4_000_000

    err = memory.out_of_memory(Small(), [784, 30, 10], 100_000)
    asked, free = numbers(str(err))
    assert free == 4_000_000
    fit = int((0.8 * 4_000_000 / 4 - memory.fixed_items([784, 30, 10]))
              // memory.per_sample_items([784, 30, 10]))
    assert f"at most ~{fit:,} fits" in str(err)
    ws = Workspace(Small(), [784, 30, 10], fit)  # what it suggests does fit the formula
    assert memory.workspace_bytes([784, 30, 10], fit, 4) <= 0.8 * 4_000_000 + 1
    assert ws.m == fit


def test_workspace_bytes_matches_the_buffers() -> None:
    be = fastbp.NumpyBackend(dtype="float64")
    ws = Workspace(be, [7, 5, 3], 11)
    arrays = [*ws.activations, *ws.deltas, *ws.scratch, ws.xbuf, ws.ybuf, *ws.grad_w, *ws.grad_b]
    assert sum(a.nbytes for a in arrays) == memory.workspace_bytes([7, 5, 3], 11, 8)


@pytest.mark.gpu
def test_gpu_out_of_memory_is_a_device_error_and_the_network_survives() -> None:
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # noqa: BLE001 - no driver at all
        pytest.skip(f"no CUDA device ({exc})")
    try:
        net = fastbp.Network([1, 100_000, 1], seed=0, device="cuda")
    except fastbp.DeviceError as exc:
        pytest.skip(f"the cuda backend is not usable here: {exc}")
    free = memory.free_bytes(net.backend)
    m = 100_000  # the work buffers need ~1.2 MB a sample: 120 GB for the batch
    assert memory.workspace_bytes(net.sizes, m, 4) > free
    X = np.random.default_rng(0).random((1, m)).astype("float32")
    y = np.zeros(m, dtype=int)
    with pytest.raises(fastbp.DeviceError) as info:
        net.train(X, y, epochs=1, batch_size=m, eta=0.1)
    msg = str(info.value)
    assert "out of memory on cuda" in msg and "is free" in msg and "smaller batch_size" in msg
    history = net.train(X[:, :1000], y[:1000], epochs=1, batch_size=10, eta=0.1)
    assert np.isfinite(history[-1].cost)
