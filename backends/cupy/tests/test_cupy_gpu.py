"""The ``cuda`` device on a real GPU: CuPy against NumPy, the captured step against the eager one.

Run with ``pytest -m gpu`` on a machine with an NVIDIA GPU and ``fastbp-cupy[cuda12]``. Without
CuPy or a GPU every test here is skipped, with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp


def _probe() -> tuple[object | None, int, str]:
    """CuPy and the number of GPUs, or why the GPU tests cannot run here."""
    try:
        import fastbp_cupy  # noqa: F401
    except ImportError:
        return None, 0, 'the fastbp-cupy plugin is not installed: pip install -e "./backends/cupy"'
    try:
        import cupy
    except ImportError:
        return None, 0, 'CuPy is not installed: pip install -e "./backends/cupy[cuda12]"'
    try:
        return cupy, int(cupy.cuda.runtime.getDeviceCount()), ""
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError where there is no driver or GPU
        return None, 0, f"no usable GPU: {exc}"


cp, N_GPUS, WHY_NOT = _probe()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cp is None, reason=WHY_NOT)]

if cp is not None:
    from fastbp_cupy import CuPyBackend

F32 = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS"):
        monkeypatch.delenv(var, raising=False)


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def params(net):
    return list(net.weights) + list(net.biases)


@pytest.mark.parametrize("sizes", [[784, 30, 10], [20, 15, 10, 5]])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_feedforward_and_backprop_agree_with_numpy(sizes, cost):
    X, labels = data(sizes, 37)
    Y = np.eye(sizes[-1])[:, labels]
    gpu = fastbp.Network(sizes, seed=1, device="cuda", cost=cost)
    cpu = gpu.to("cpu")
    assert isinstance(gpu._weights[0], cp.ndarray)
    np.testing.assert_allclose(gpu.feedforward(X), cpu.feedforward(X), **F32)
    for a, b in zip(sum(gpu.backprop(X, Y), []), sum(cpu.backprop(X, Y), [])):
        assert type(a) is np.ndarray
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_one_seeded_epoch_agrees_with_numpy_float32(graphs, cost):
    sizes = [784, 30, 10]
    X, labels = data(sizes, 2003)
    gpu = fastbp.Network(sizes, seed=2, device=CuPyBackend(graphs=graphs), cost=cost)
    cpu = gpu.to("cpu")
    hg = gpu.train(X, labels, epochs=1, batch_size=10, eta=0.5, test=(X, labels))
    hc = cpu.train(X, labels, epochs=1, batch_size=10, eta=0.5, test=(X, labels))
    assert gpu.backend.last_epoch_path == ("graph" if graphs else "eager")
    assert gpu.backend.graph_error is None
    np.testing.assert_allclose(hg[0].cost, hc[0].cost, rtol=1e-4)
    assert abs(hg[0].correct - hc[0].correct) <= 5
    for a, b in zip(params(gpu), params(cpu)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("sizes,m", [([784, 30, 10], 10), ([50, 40, 30, 20, 10], 7),
                                     ([784, 100, 10], 100)])
def test_epoch_equals_numpy_in_float64(graphs, sizes, m):
    """The raw kernels of the captured step and the eager step, held to the cpu at 1e-9."""
    X, labels = data(sizes, 503)
    gpu = fastbp.Network(sizes, dtype="float64", seed=3,
                         device=CuPyBackend(dtype="float64", graphs=graphs))
    cpu = gpu.to("cpu")
    gpu.train(X, labels, epochs=2, batch_size=m, eta=0.3, lmbda=0.5)
    cpu.train(X, labels, epochs=2, batch_size=m, eta=0.3, lmbda=0.5)
    assert gpu.backend.last_epoch_path == ("graph" if graphs else "eager")
    for a, b in zip(params(gpu), params(cpu)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-5), ("float64", 1e-12)])
def test_graph_step_equals_eager_step(dtype, atol):
    sizes = [784, 30, 10]
    X, labels = data(sizes, 400)
    runs = {}
    for graphs in (True, False):
        be = CuPyBackend(dtype=dtype, graphs=graphs)
        net = fastbp.Network(sizes, dtype=dtype, seed=4, device=be)
        h = net.train(X, labels, epochs=1, batch_size=10, eta=3.0, shuffle=False)
        runs[graphs] = (net, h, be)
    assert runs[True][2].last_epoch_path == "graph" and runs[True][2].graph_error is None
    assert runs[False][2].last_epoch_path == "eager"
    for a, b in zip(params(runs[True][0]), params(runs[False][0])):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose(runs[True][1][0].cost, runs[False][1][0].cost, rtol=1e-5)


def test_the_epoch_returns_a_device_scalar():
    """The cost stays on the GPU until the caller reads it (no synchronisation in the epoch)."""
    from fastbp.training import EpochPlan

    sizes = [20, 10, 5]
    X, labels = data(sizes, 100)
    for graphs in (True, False):
        net = fastbp.Network(sizes, seed=1, device=CuPyBackend(graphs=graphs))
        be = net.backend
        with be.activate():
            plan, _ = net._plan(X, labels, 10, 1.0, 0.0, None)
            assert isinstance(plan, EpochPlan)
            plan.order = be.index_array(np.arange(100))
            total = be.sgd_epoch(plan)
        assert isinstance(total, cp.ndarray) and total.shape == ()


def test_gradcheck_in_float64_on_the_gpu():
    X, labels = data([6, 5, 4], 9)
    for cost in ("quadratic", "cross-entropy"):
        net = fastbp.Network([6, 5, 4], dtype="float64", seed=1, device="cuda", cost=cost)
        assert fastbp.gradcheck(net, X, np.eye(4)[:, labels]) < 1e-6


def test_to_cpu_round_trip():
    gpu = fastbp.Network([784, 30, 10], seed=5, device="cuda")
    cpu = gpu.to("cpu")
    assert type(cpu._weights[0]) is np.ndarray
    back = cpu.to("cuda")
    for a, b, c in zip(params(gpu), params(cpu), params(back)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_device_inputs_and_mixed_devices():
    X, labels = data([8, 5, 3], 20)
    gpu = fastbp.Network([8, 5, 3], seed=1, device="cuda")
    np.testing.assert_allclose(gpu.feedforward(cp.asarray(X)), gpu.feedforward(X), atol=1e-6)
    assert gpu.count_correct(cp.asarray(X), cp.asarray(labels)) == gpu.count_correct(X, labels)
    cpu = fastbp.Network([8, 5, 3], seed=1)
    with pytest.raises(fastbp.DeviceError, match=r"cupy array on cuda:0.*net.to\('cuda:0'\)"):
        cpu.feedforward(cp.asarray(X))


@pytest.mark.skipif(N_GPUS < 2, reason="needs two GPUs")
def test_second_gpu():
    X, labels = data([8, 5, 3], 20)
    net = fastbp.Network([8, 5, 3], seed=1, device="cuda:1")
    assert net._weights[0].device.id == 1
    net.train(X, labels, epochs=1, batch_size=5, eta=1.0)
    on_0 = cp.asarray(X)
    with pytest.raises(fastbp.DeviceError, match="on cuda:0, but the network is on 'cuda:1'"):
        net.feedforward(on_0)


def test_describe_names_the_gpu():
    info = CuPyBackend().describe()
    assert info["kind"] == "gpu" and info["memory"] > 0 and info["model"]
    assert info["cupy"] == cp.__version__ and info["cuda_runtime"] != "none"


@pytest.mark.slow
def test_mnist_one_epoch(mnist_or_skip):
    data_ = mnist_or_skip
    net = fastbp.Network([784, 30, 10], seed=1, device="cuda")
    h = net.train(data_.train.X, data_.train.labels, epochs=1, batch_size=10, eta=3.0,
                  test=(data_.test.X, data_.test.labels))
    assert h[0].accuracy > 0.85


@pytest.fixture
def mnist_or_skip():
    import os
    from pathlib import Path

    here = Path(__file__).resolve()
    for d in (os.environ.get("FASTBP_DATA"), here.parents[3].parent / "shared" / "data" / "mnist"):
        if d and (Path(d) / "train-images-idx3-ubyte.gz").exists():
            from fastbp.datasets import load_mnist

            return load_mnist(d, download=False)
    pytest.skip("MNIST not found: set FASTBP_DATA")
