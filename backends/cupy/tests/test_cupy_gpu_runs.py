"""The ``cuda`` device on a real GPU, continued (``test_cupy_gpu.py`` has the matrix form, the
epochs and the techniques against float64, and how float32 is judged): determinism and buffers,
other dtypes, the evaluator, memory, the device's contract and one MNIST epoch.

Run with ``pytest -m gpu``; skipped without CuPy or a GPU, and run on the NumPy stand-in by
``benchmarks/gpu/check.sh --dry-run``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
from test_cupy_gpu import (
    EPS,
    F32_FLOOR,
    N_GPUS,
    STAND_IN,
    WHY_NOT,
    against_float64,
    backend,
    clean_environment,  # noqa: F401 - the autouse fixture
    cp,
    data,
    params,
    rel,
    samples,
    twin,
)

import fastbp
from fastbp.core.epoch import run_epoch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cp is None, reason=WHY_NOT)]

if cp is not None:
    from fastbp_cupy import CuPyBackend


# -- determinism and buffers -------------------------------------------------------------------
@pytest.mark.parametrize("graphs", [True, False])
def test_two_runs_are_bit_equal(graphs):
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(1003))
    runs = []
    for _ in range(2):
        net = fastbp.Network(sizes, seed=5, device=backend(graphs=graphs))
        h = net.train(X, labels, epochs=2, batch_size=10, eta=3.0)
        runs.append((params(net), [r.cost for r in h]))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("extra", [{}, {"momentum": 0.9, "dropout": 0.5}],
                         ids=["plain", "techniques"])
def test_a_measured_plan_leaves_training_bit_equal(monkeypatch, tmp_path, extra):
    """The planner's trials (graph and eager, on copies of the parameters and velocities) change
    nothing: training that measured its plan equals training forced to the chosen candidate."""
    import json

    monkeypatch.setenv("FASTBP_PLAN", "auto")
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path))
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(1003))
    runs = []
    for _ in range(2):
        net = fastbp.Network(sizes, seed=5, device=backend(graphs=None))
        h = net.train(X, labels, epochs=2, batch_size=10, eta=3.0, **extra)
        runs.append((params(net) + list(net.velocities or []), [r.cost for r in h],
                     net.backend.last_epoch_path))
        plans = json.loads((tmp_path / "plans.json").read_text())["sections"]["cuda"]["plans"]
        (entry,) = plans.values()  # the key names the techniques too
        assert set(entry["speeds"]) == {"graph", "eager"}
        monkeypatch.setenv("FASTBP_PLAN", entry["choice"])
    assert runs[0][2] == runs[1][2] == entry["choice"]
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_buffers_poisoned_with_nan_change_nothing(graphs, dtype):
    """Every work buffer starts as NaN before the first step (and the first replay): a kernel
    that read what no kernel wrote would turn the result into NaN."""
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(507))
    runs = []
    for poisoned in (False, True):
        net = fastbp.Network(sizes, dtype=dtype, seed=6,
                             device=backend(dtype, graphs, poison_buffers=poisoned))
        h = net.train(X, labels, epochs=1, batch_size=10, eta=3.0)
        assert net.backend.last_epoch_path == ("graph" if graphs else "eager")
        runs.append((params(net), h[0].cost))
    assert np.isfinite(runs[1][1])
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


def test_progress_chunks_equal_one_call():
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(1007))
    nets, costs = [], []
    for progress in (None, lambda done, cost, n: None):
        net = fastbp.Network(sizes, seed=7, device=backend())
        h = net.train(X, labels, epochs=2, batch_size=10, eta=3.0, progress=progress)
        nets.append(net)
        costs.append([r.cost for r in h])
    for a, b in zip(params(nets[0]), params(nets[1])):
        np.testing.assert_array_equal(a, b)
    assert rel(costs[1], costs[0]) <= 1e-12


def test_two_train_calls_in_a_row_equal_one_and_free_the_first_data_set():
    sizes = [784, 30, 10]
    n = samples(4000)
    X, labels = data(sizes, n)
    once = fastbp.Network(sizes, seed=8, device=backend())
    twice = fastbp.Network(sizes, seed=8, device=backend())
    once.train(X, labels, epochs=2, batch_size=10, eta=3.0)
    pool = cp.get_default_memory_pool()
    gc.collect()
    held = pool.used_bytes()
    twice.train(X, labels, epochs=1, batch_size=10, eta=3.0)
    gc.collect()
    after_first = pool.used_bytes()
    twice.train(X, labels, epochs=1, batch_size=10, eta=3.0)
    assert twice.backend.last_epoch_path == "graph"
    for a, b in zip(params(once), params(twice)):
        np.testing.assert_array_equal(a, b)
    if not STAND_IN:  # the stand-in has no memory pool to look into
        data_set = n * (sizes[0] + sizes[-1]) * 4
        assert after_first - held < data_set / 2, "the first call's data set is still held"


def test_a_plan_frees_its_graphs_and_data_set():
    if STAND_IN:
        pytest.skip("the stand-in has no device memory to count")
    sizes = [784, 30, 10]
    X, labels = data(sizes, 5000)
    net = fastbp.Network(sizes, seed=9, device=backend())
    be, pool = net.backend, cp.get_default_memory_pool()
    gc.collect()
    before = pool.used_bytes()
    with be.activate():
        plan = net.epoch_plan(X, labels, batch_size=10, eta=3.0)
        plan.start(be.index_array(np.arange(5000)))
        float(run_epoch(be, plan))
    assert be.last_epoch_path == "graph" and pool.used_bytes() > before + 5000 * 794 * 4
    del plan
    gc.collect()
    assert pool.used_bytes() - before < 5000 * 794 * 4 / 2


# -- other dtypes, the evaluator, memory -------------------------------------------------------
def test_float16_trains_within_float16_rounding():
    sizes = [30, 20, 10]
    X, labels = data(sizes, samples(400))
    net = fastbp.Network(sizes, dtype="float16", seed=10, device="cuda", init="scaled")
    err, tol, (hg, _, _) = against_float64(net, X, labels, epochs=1, batch_size=10, eta=0.5)
    assert net.backend.last_epoch_path == "generic"
    assert np.isfinite(hg[0].cost) and err <= tol, (err, tol)


def test_the_evaluators_partial_chunk():
    """10,007 test samples: the evaluator's chunks of 10,000 end with a partial one of 7."""
    sizes = [784, 30, 10]
    X, labels = data(sizes, 10_007, seed=11)
    gpu = fastbp.Network(sizes, dtype="float64", seed=12, device="cuda")
    cpu = twin(gpu, "float64")
    assert gpu.count_correct(X, labels) == cpu.count_correct(X, labels)
    hg = gpu.train(X[:, :500], labels[:500], epochs=1, batch_size=10, eta=3.0,
                   test=(X, labels))
    hc = cpu.train(X[:, :500], labels[:500], epochs=1, batch_size=10, eta=3.0,
                   test=(X, labels))
    assert hg[0].correct == hc[0].correct


def test_out_of_memory_is_a_device_error():
    if STAND_IN:
        pytest.skip("the stand-in has no device memory to exhaust")
    be = CuPyBackend()
    _, total = be.memory_info()
    side = int(np.sqrt(1.3 * total / 4)) + 1  # one (side, side) float32 buffer exceeds the GPU
    net = fastbp.Network([784, side], seed=13, device=be)
    with pytest.raises(fastbp.DeviceError, match="out of memory on cuda"):
        net.feedforward(np.zeros((784, side)))
    del net
    gc.collect()
    cp.get_default_memory_pool().free_all_blocks()
    small = fastbp.Network([20, 10, 5], seed=13, device=be)  # the GPU still works
    X, labels = data([20, 10, 5], 100)
    small.train(X, labels, epochs=1, batch_size=10, eta=1.0)
    assert np.isfinite(params(small)[0]).all()


# -- the device's contract ---------------------------------------------------------------------
def test_the_epoch_returns_a_device_scalar():
    """The cost stays on the GPU until the caller reads it (no synchronisation in the epoch)."""
    sizes = [20, 10, 5]
    X, labels = data(sizes, 100)
    for graphs in (True, False):
        net = fastbp.Network(sizes, seed=1, device=backend(graphs=graphs))
        be = net.backend
        with be.activate():
            plan = net.epoch_plan(X, labels, batch_size=10, eta=1.0)
            plan.start(be.index_array(np.arange(100)))
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
    if STAND_IN:  # its arrays are NumPy arrays, which the cpu device takes as host data
        return
    cpu = fastbp.Network([8, 5, 3], seed=1)
    with pytest.raises(fastbp.DeviceError, match=r"cupy array on cuda:0.*net.to\('cuda:0'\)"):
        cpu.feedforward(cp.asarray(X))


@pytest.mark.skipif(N_GPUS < 2, reason="needs two GPUs")
def test_second_gpu():
    sizes = [784, 30, 10]
    X, labels = data(sizes, 1003)
    on_0 = fastbp.Network(sizes, seed=1, device="cuda:0")
    on_1 = twin(on_0, "float32", "cuda:1")
    assert on_1._weights[0].device.id == 1
    for graphs in (True, False):
        on_0.backend._graphs_flag = on_1.backend._graphs_flag = graphs
        h0 = on_0.train(X, labels, epochs=1, batch_size=10, eta=3.0)
        h1 = on_1.train(X, labels, epochs=1, batch_size=10, eta=3.0)
        assert on_1.backend.last_epoch_path == ("graph" if graphs else "eager")
        same_model = (on_0.backend.describe()["model"] == on_1.backend.describe()["model"])
        limit = 0.0 if same_model else F32_FLOOR * EPS["float32"]
        assert rel(params(on_1), params(on_0)) <= limit
        assert rel(h1[0].cost, h0[0].cost) <= limit
    with pytest.raises(fastbp.DeviceError, match="on cuda:0, but the network is on 'cuda:1'"):
        on_1.feedforward(cp.asarray(X))


def test_describe_names_the_gpu():
    info = CuPyBackend().describe()
    assert info["kind"] == "gpu" and info["memory"] > 0 and info["model"]
    assert info["cupy"] == cp.__version__ and info["cuda_runtime"] != "none"


def mnist_folder():
    here = Path(__file__).resolve()
    for d in (os.environ.get("FASTBP_DATA"), here.parents[3] / ".gpu-data",
              here.parents[3].parent / "shared" / "data" / "mnist"):
        if d and (Path(d) / "train-images-idx3-ubyte.gz").exists():
            return d
    return None


@pytest.mark.slow
def test_mnist_one_epoch():
    folder = mnist_folder()
    if folder is None:
        pytest.skip("MNIST not found: set FASTBP_DATA")
    from fastbp.datasets import load_mnist

    mnist = load_mnist(folder, download=False)
    for graphs in (True, False):
        net = fastbp.Network([784, 30, 10], seed=1, device=backend(graphs=graphs))
        h = net.train(mnist.train.X, mnist.train.labels, epochs=1, batch_size=10, eta=3.0,
                      test=(mnist.test.X, mnist.test.labels))
        assert net.backend.last_epoch_path == ("graph" if graphs else "eager")
        assert h[0].accuracy > 0.85
