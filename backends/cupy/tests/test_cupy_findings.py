"""The CUDA backend on the NumPy stand-in, continued (``test_cupy_without_gpu.py`` has the rest):
graphs die with their plan, out-of-memory while capturing, kernels built with the backend, tile
loads along the unit stride, and the smaller items."""

from __future__ import annotations

import gc
import logging
import weakref

import numpy as np
import pytest

import fastbp
import fastbp.core.epoch
from fastbp.cli import main

fastbp_cupy = pytest.importorskip("fastbp_cupy")
from fastbp_cupy import eager as eager_module  # noqa: E402
from fastbp_cupy import emulator  # noqa: E402
from fastbp_cupy import epoch as epoch_module  # noqa: E402
from fastbp_cupy import kernels as K  # noqa: E402
from fastbp_cupy.backend import (  # noqa: E402
    CuPyBackend,
    plan_programs,
)
from fastbp_cupy.graph import (  # noqa: E402
    Accumulator,
    CapturedEpoch,
    NotCapturable,
    StepProgram,
    bias_launch,
    gemm_launch,
    output_error_launch,
)
from fastbp_fake_cupy import Counts, install  # noqa: E402
from stand_in import (  # noqa: E402
    clean_environment,  # noqa: F401 - the autouse fixture
    data,
    load_speed_cuda,
    params,
)


# -- finding 1: graphs belong to the training plan and die with it ---------------------------
def test_graphs_live_on_the_plan_and_die_with_it(monkeypatch):
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64")
    X, labels = data([10, 6, 4], 40)
    net = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0)
    plan.start(be.index_array(np.arange(40)))
    float(be.sgd_epoch(plan))
    assert be.last_epoch_path == "graph"
    programs = plan_programs(plan)
    assert any(isinstance(p, CapturedEpoch) for p in programs.programs.values())
    data_set = weakref.ref(plan.data.xs)
    for _ in range(2):  # more epochs of the same plan replay what was captured
        plan.start(be.index_array(np.random.default_rng(0).permutation(40)))
        float(be.sgd_epoch(plan))
    assert fake.calls["capture"] == 1
    del plan, programs
    gc.collect()
    assert data_set() is None, "the uploaded data set outlived its plan"
    assert not any(isinstance(v, (dict, list)) and v for k, v in vars(be).items()
                   if k not in ("_ones",)), "the backend keeps programs of its own"


def test_training_twice_leaves_no_stale_data_set_on_the_device(monkeypatch):
    fake = install(monkeypatch)
    made = []

    class Recorded(StepProgram):
        def __init__(self, xp, weights, biases, xs, ys, *args, **kwargs):
            made.append(weakref.ref(xs))
            super().__init__(xp, weights, biases, xs, ys, *args, **kwargs)

    monkeypatch.setattr(epoch_module, "StepProgram", Recorded)
    X, labels = data([10, 6, 4], 40)
    gpu = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=CuPyBackend("float64"))
    cpu = gpu.to("cpu")
    for _ in range(2):
        gpu.train(X, labels, epochs=2, batch_size=4, eta=1.0)
        cpu.train(X, labels, epochs=2, batch_size=4, eta=1.0)
        gc.collect()
        assert all(ref() is None for ref in made), "a data set is still held after train()"
    assert len(made) == 2 and fake.calls["capture"] == 2  # one capture per train() call
    for a, b in zip(params(gpu), params(cpu)):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_speed_cuda_times_epochs_of_one_plan(monkeypatch):
    """The benchmark builds one plan (one upload, one capture) and times ``sgd_epoch`` on it."""
    fake = install(monkeypatch)
    speed = load_speed_cuda()
    plans = []
    real_plan = fastbp.Network.epoch_plan

    def counted(self, *args, **kwargs):
        plans.append(1)
        return real_plan(self, *args, **kwargs)

    monkeypatch.setattr(fastbp.Network, "epoch_plan", counted)
    X, labels = data([20, 8, 4], 120)
    contender = speed.FastbpContender("graph", [20, 8, 4], 10, X.astype(np.float32), labels)
    contender.prepare()
    contender.run()  # warm-up: captures
    uploads, captures = Counts.allocations, fake.calls["capture"]
    seconds = [contender.run() for _ in range(3)]
    assert all(s > 0 for s in seconds) and contender.path == "graph"
    assert len(plans) == 1 and fake.calls["capture"] == captures
    # per timed epoch: the order's upload and the cost scalar, never the data set
    assert Counts.allocations - uploads <= 3 * 2


# -- finding 2: running out of memory while capturing skips graphs for one epoch only ---------
def test_out_of_memory_during_capture_skips_graphs_for_that_epoch_only(monkeypatch, caplog):
    fake = install(monkeypatch)
    failures = [fake.cuda.memory.OutOfMemoryError("out of memory to allocate 8388608 bytes")]

    class Flaky(StepProgram):
        def __init__(self, *args, **kwargs):
            if failures:
                raise failures.pop()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "StepProgram", Flaky)
    be = CuPyBackend(dtype="float64")
    X, labels = data([10, 6, 4], 40)
    gpu = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be)
    cpu = gpu.to("cpu")
    paths = []
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        gpu.train(X, labels, epochs=3, batch_size=4, eta=1.0,
                  callback=lambda record, net: paths.append(net.backend.last_epoch_path))
    cpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    assert paths == ["eager", "graph", "graph"]
    assert be.graph_error is None and be.graph_skipped is None and fake.pool.released == 1
    warnings = [r.getMessage() for r in caplog.records if "memory" in r.getMessage()]
    assert len(warnings) == 1 and "next one tries again" in warnings[0]
    for a, b in zip(params(gpu), params(cpu)):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_out_of_memory_in_the_eager_step_is_a_device_error(monkeypatch):
    fake = install(monkeypatch)

    def no_memory(*args, **kwargs):
        raise fake.cuda.memory.OutOfMemoryError("out of memory to allocate 8 bytes")

    be = CuPyBackend(dtype="float64", graphs=False)
    X, labels = data([10, 6, 4], 40)
    net = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be)
    monkeypatch.setattr(eager_module, "EagerProgram", no_memory)
    monkeypatch.setattr(epoch_module, "EagerProgram", no_memory)
    with pytest.raises(fastbp.DeviceError, match="out of memory on cuda"):
        net.train(X, labels, epochs=1, batch_size=4, eta=1.0)


# -- finding 3: a trivial kernel is compiled when the backend is built ------------------------
def test_a_backend_compiles_one_kernel_when_it_is_built(monkeypatch):
    fake = install(monkeypatch)
    CuPyBackend()
    assert fake.calls["elementwise"] == 1


def test_missing_cuda_headers_fail_when_the_backend_is_built(monkeypatch, capsys):
    fake = install(monkeypatch)
    fake.fail_kernels = ("Failed to find CUDA headers (cuda_fp16.h); set CUDA_PATH or install "
                         "the CUDA toolkit")
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([3, 2], device="cuda")
    msg = str(err.value)
    assert "cannot find the CUDA headers" in msg and "cupy-cuda12x[ctk]" in msg
    assert "Failed to find CUDA headers" in msg
    assert isinstance(err.value.__cause__, RuntimeError)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("cuda [plugin fastbp-cupy"):].splitlines()
    assert block[1].startswith("  cannot run here: ") and "CUDA headers" in block[1]


def test_a_kernel_that_computes_a_wrong_value_is_a_device_error(monkeypatch):
    fake = install(monkeypatch)
    name, (inp, out, _, kname) = "probe", K.ELEMENTWISE["probe"]
    monkeypatch.setitem(K.ELEMENTWISE, name, (inp, out, "y = x", kname))
    with pytest.raises(fastbp.DeviceError, match=r"0 \+ 1 = 0.0"):
        CuPyBackend()
    assert fake.calls["elementwise"] == 1


# -- finding 4: tile loads follow each operand's unit stride ----------------------------------
def walked_stride(launch, operand):
    """The element stride between the addresses that threads tx and tx+1 of one row of the
    block load from ``operand`` ("A" or "B") in the tiled kernel, from the emulator's model."""
    args = launch.args
    layout = int(args[18])
    if operand == "A":
        s0, s1 = int(args[1]), int(args[2])
        _, _, i, p = emulator.a_tile_loads(bool(layout & K.LOAD_A_ALONG_ROWS), np.zeros(1, int), 0)
        addr = i * s0 + p * s1
    else:
        s0, s1 = int(args[4]), int(args[5])
        _, _, p, j = emulator.b_tile_loads(bool(layout & K.LOAD_B_ALONG_ROWS), np.zeros(1, int), 0)
        addr = p * s0 + j * s1
    steps = np.unique(np.diff(addr[0], axis=1))  # along tx, for every ty
    assert steps.size == 1
    return abs(int(steps[0]))


@pytest.mark.parametrize("sizes,m", [([784, 30, 10], 10), ([784, 30, 10], 128),
                                     ([784, 30, 10], 300), ([784, 100, 10], 100),
                                     ([20, 50, 40, 3], 17)])
def test_tiled_gemm_loads_follow_the_unit_stride(sizes, m):
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((n, k)) for k, n in zip(sizes[:-1], sizes[1:])]
    b = [rng.standard_normal((n, 1)) for n in sizes[1:]]
    xs, ys = rng.random((m, sizes[0])), rng.random((m, sizes[-1]))
    prog = StepProgram(np, W, b, xs, ys, fastbp.QuadraticCost, m, 0.1, 1.0)
    tiled = [item for item in prog.launches if item.kernel == "fastbp_gemm_tiled"]
    assert tiled
    for item in tiled:
        for operand, (rows, cols, s0, s1) in (
                ("A", (item.args[9], item.args[11], item.args[1], item.args[2])),
                ("B", (item.args[11], item.args[10], item.args[4], item.args[5]))):
            if int(rows) > 1 and int(cols) > 1:
                assert walked_stride(item, operand) == min(abs(int(s0)), abs(int(s1))), \
                    (operand, item.args[9:12], (s0, s1))
    # the cases of the finding: the first layer's forward over x_rowsᵀ, and Wᵀ in BP2
    fwd0 = prog.launches[1]
    if fwd0.kernel == "fastbp_gemm_tiled":
        assert walked_stride(fwd0, "B") == 1
    bp2 = [i for i in tiled if int(i.args[15]) == K.GEMM_BP2]
    assert all(walked_stride(i, "A") == 1 for i in bp2)


def test_the_warp_per_output_gemm_runs_only_on_unit_strides_along_k():
    rng = np.random.default_rng(0)
    A, B = rng.random((10, 100)), rng.random((100, 7))
    C, v = np.empty((10, 7)), rng.random((10, 1))
    assert gemm_launch(A, B.T.copy().T, C, v, K.GEMM_FORWARD).kernel == "fastbp_gemm_dot"
    assert gemm_launch(A, B, C, v, K.GEMM_FORWARD).kernel == "fastbp_gemm_tiled"  # b0 = 7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M,N,Kd", [(1, 1, 1), (30, 10, 784), (17, 33, 15), (64, 129, 64),
                                    (10, 1, 30), (1, 7, 63)])
def test_tiled_gemm_with_either_layout_equals_numpy(dtype, M, N, Kd):
    """The emulator's thread-by-thread model of the tiled kernel, each of the four layouts
    forced, against a float64 product: every tile element is loaded, and only once."""
    rng = np.random.default_rng(M * N * Kd)
    tol = 1e-12 if dtype == "float64" else 2e-6 * np.sqrt(Kd)
    A64, B64 = rng.standard_normal((M, Kd)), rng.standard_normal((Kd, N))
    v64 = rng.standard_normal((M, 1))
    for a_t in (False, True):
        for b_t in (False, True):
            A = (np.asfortranarray if a_t else np.ascontiguousarray)(A64.astype(dtype))
            B = (np.asfortranarray if b_t else np.ascontiguousarray)(B64.astype(dtype))
            A = A if not a_t else A.T.copy().T  # an F-ordered view of a C buffer
            B = B if not b_t else B.T.copy().T
            for mode in (K.GEMM_FORWARD, K.GEMM_BP2, K.GEMM_SGD):
                C = np.full((M, N), 0.5 if mode == K.GEMM_SGD else np.nan, dtype=dtype)
                v = v64.astype(dtype) if mode == K.GEMM_FORWARD else np.full((M, N), 0.3, dtype)
                launch = gemm_launch(A, B, C, v, mode, 0.25, 0.9, kernel="fastbp_gemm_tiled")
                for layout in range(4):
                    args = (*launch.args[:18], np.int32(layout))
                    C[...] = 0.5 if mode == K.GEMM_SGD else np.nan
                    emulator.run_kernel(launch.kernel, launch.grid, launch.block, args)
                    acc = A64 @ B64
                    want = {K.GEMM_FORWARD: 1 / (1 + np.exp(-(acc + v64))),
                            K.GEMM_BP2: acc * 0.3 * 0.7,
                            K.GEMM_SGD: 0.9 * 0.5 - 0.25 * acc}[mode]
                    assert not np.isnan(C).any()
                    err = np.linalg.norm(C - want) / max(np.linalg.norm(want), 1e-300)
                    assert err < tol, (layout, mode, err)


# -- finding 5: the smaller items -------------------------------------------------------------
@pytest.mark.parametrize("n_out,m,blocks", [(10, 10, 1), (10, 128, 2), (1, 1, 1),
                                            (1000, 128, 64)])
def test_output_error_spreads_over_blocks_and_resets_its_ticket(n_out, m, blocks):
    rng = np.random.default_rng(1)
    a, y_rows = rng.random((n_out, m)), rng.random((m, n_out)).round()
    delta = np.full((n_out, m), np.nan)
    acc = Accumulator(np)
    launch = output_error_launch(a, y_rows, delta, K.COST_QUADRATIC, acc)
    assert launch.grid == (blocks,) and launch.block == (K.REDUCE_THREADS,)
    for _ in range(2):  # the kernel leaves its ticket at 0 for the next launch
        emulator.launch(launch)
    assert int(acc.done[0]) == 0
    np.testing.assert_allclose(delta, (a - y_rows.T) * a * (1 - a), rtol=1e-12)
    np.testing.assert_allclose(acc.cost[0], 2 * 0.5 * np.sum((a - y_rows.T) ** 2), rtol=1e-12)


def test_bias_update_is_one_warp_per_row():
    rng = np.random.default_rng(2)
    b, delta, step = rng.random((37, 1)), rng.random((37, 9)), np.zeros(1, np.int32)
    launch = bias_launch(b, delta, 0.5, step, advance=True)
    assert launch.block == (K.BIAS_THREADS,)
    assert launch.grid[0] * K.BIAS_THREADS // 32 >= 37 > (launch.grid[0] - 1) * 4
    want = b - 0.5 * delta.sum(axis=1, keepdims=True)
    emulator.launch(launch)
    np.testing.assert_allclose(b, want, rtol=1e-12)
    assert int(step[0]) == 1
    assert "thread 0 of block 0 also moves the step counter on" in K.RAW_SOURCE
    assert "the last thread" not in K.RAW_SOURCE


@pytest.mark.parametrize("graphs", [False, True])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_a_warm_epoch_allocates_nothing_per_step(monkeypatch, graphs, cost):
    install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=graphs)
    X, labels = data([10, 6, 4], 203)
    net = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be, cost=cost)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0)
    plan.start(be.index_array(np.arange(203)))
    float(be.sgd_epoch(plan))  # warm: programs built, graphs captured
    before = Counts.allocations
    float(be.sgd_epoch(plan))
    assert be.last_epoch_path == ("graph" if graphs else "eager")
    assert Counts.allocations - before <= 1  # the epoch's cost, read once


def test_the_allocation_count_sees_the_generic_loop(monkeypatch):
    """The counter of the test above works: the generic loop allocates scalars per step."""
    class Custom(fastbp.QuadraticCost):
        @staticmethod
        def output_error(backend, a, y, out, scratch):
            return fastbp.QuadraticCost.output_error(backend, a, y, out, scratch)

    install(monkeypatch)
    be = CuPyBackend(dtype="float64")
    X, labels = data([10, 6, 4], 40)
    net = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be, cost=Custom)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0)
    plan.start(be.index_array(np.arange(40)))
    float(fastbp.core.epoch.run_epoch(be, plan))
    before = Counts.allocations
    float(fastbp.core.epoch.run_epoch(be, plan))
    assert be.last_epoch_path == "generic" and Counts.allocations - before >= 10


# -- the captured step, straight on NumPy through the emulator -------------------------------
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-10), ("float32", 1e-4)])
def test_step_program_on_the_emulator_equals_the_cpu_epoch(dtype, atol):
    sizes, n, m = [784, 30, 10], 60, 10
    X, labels = data(sizes, n, seed=5)
    net = fastbp.Network(sizes, dtype=dtype, seed=1)
    ref = net.to("cpu")
    order = np.random.default_rng(1).permutation(n)
    plan = ref.epoch_plan(X, labels, batch_size=m, eta=3.0, lmbda=0.5)
    plan.start(order)
    want_cost = float(fastbp.core.epoch.run_epoch(ref.backend, plan))
    plan2 = net.epoch_plan(X, labels, batch_size=m, eta=3.0, lmbda=0.5)
    prog = StepProgram(np, plan2.params.weights, plan2.params.biases, plan2.data.xs,
                       plan2.data.ys, fastbp.QuadraticCost, m, 3.0 / m, plan2.settings.decay,
                       poison_buffers=True)
    kernels = {item.kernel for item in prog.launches}
    assert {"fastbp_gemm_dot", "fastbp_gemm_tiled"} <= kernels  # both GEMMs are exercised
    prog.order[:n] = order
    prog.run(emulator.launch, n // m)
    assert int(prog.step[0]) == n // m
    np.testing.assert_allclose(prog.cost[0], want_cost, rtol=1e-5 if dtype == "float32" else 1e-12)
    for a, b in zip(params(net), params(ref)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def test_step_program_refuses_what_it_cannot_capture():
    w = [np.zeros((3, 4), dtype=np.float16)]
    b = [np.zeros((3, 1), dtype=np.float16)]
    xs, ys = np.zeros((8, 4), dtype=np.float16), np.zeros((8, 3), dtype=np.float16)
    with pytest.raises(NotCapturable, match="float16"):
        StepProgram(np, w, b, xs, ys, fastbp.QuadraticCost, 2, 0.1, 1.0)
    w32 = [np.zeros((4, 3), dtype=np.float32).T]  # not C-contiguous
    with pytest.raises(NotCapturable, match="contiguous"):
        StepProgram(np, w32, [np.zeros((3, 1), np.float32)], xs.astype(np.float32),
                    ys.astype(np.float32), fastbp.QuadraticCost, 2, 0.1, 1.0)

    class Custom:
        output_error = staticmethod(lambda *a: 0.0)

    with pytest.raises(NotCapturable, match="no raw kernel"):
        StepProgram(np, [np.zeros((3, 4))], [np.zeros((3, 1))], np.zeros((8, 4)),
                    np.zeros((8, 3)), Custom, 2, 0.1, 1.0)
