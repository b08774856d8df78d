"""Chapter 3's momentum, L1 and dropout on the ``cuda`` device's own epochs, on the CuPy stand-in.

The captured graph and the eager step run them with their raw kernels (emulated here, launch by
launch): each test checks the path the epoch took (never the generic loop) and holds the result
to the ``cpu`` device in float64. The hash of the dropout kernels is also compiled from the CUDA
source with the host's C++ compiler and held to :mod:`fastbp.core.dropout`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp.core import dropout

pytest.importorskip("fastbp_cupy")
import fastbp_fake_cupy  # noqa: E402
from fastbp_cupy import emulator  # noqa: E402
from fastbp_cupy import kernels as K  # noqa: E402
from fastbp_cupy.backend import CuPyBackend, plan_programs  # noqa: E402
from fastbp_cupy.graph import StepProgram  # noqa: E402
from fastbp_fake_cupy import Counts, install  # noqa: E402

TECHNIQUES = {
    "momentum": {"momentum": 0.9},
    "l1": {"l1": 2.0},
    "dropout": {"dropout": 0.5},
    "all": {"momentum": 0.6, "l1": 1.0, "dropout": 0.3},
}
PLAIN_KERNELS = {"fastbp_gemm_tiled", "fastbp_gemm_dot", "fastbp_gather", "fastbp_output_error",
                 "fastbp_bias_update", "fastbp_softmax_columns"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def kernels_run(monkeypatch):
    """The names of the raw kernels the emulator runs (eager launches and graph replays)."""
    seen: set[str] = set()
    real = emulator.run_kernel

    def record(name, grid, block, args):
        seen.add(name)
        real(name, grid, block, args)

    monkeypatch.setattr(fastbp_fake_cupy.emulator, "run_kernel", record)
    return seen


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def train_pair(monkeypatch, kw, *, graphs, sizes=(10, 7, 6, 4), n=53, m=5, dtype="float64",
               cost="cross-entropy", activation="sigmoid", epochs=2, progress=None,
               **backend_attrs):
    """The same network trained with ``kw`` on the stand-in GPU and on the cpu."""
    fake = install(monkeypatch)
    be = CuPyBackend(dtype=dtype, graphs=graphs)
    for k, v in backend_attrs.items():
        setattr(be, k, v)
    X, labels = data(list(sizes), n)
    gpu = fastbp.Network(list(sizes), dtype=dtype, seed=3, device=be, cost=cost,
                         activation=activation)
    cpu = gpu.to("cpu")
    common = dict(epochs=epochs, batch_size=m, eta=0.5, lmbda=0.2, test=(X, labels), **kw)
    hg = gpu.train(X, labels, progress=progress, **common)
    hc = cpu.train(X, labels, **common)
    return fake, be, gpu, cpu, hg, hc


def assert_same(gpu, cpu, hg, hc, atol=1e-10):
    for a, b in zip([*gpu.weights, *gpu.biases], [*cpu.weights, *cpu.biases]):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    if cpu.velocities is not None:
        for a, b in zip(gpu.velocities, cpu.velocities):
            np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose([r.cost for r in hg], [r.cost for r in hc], rtol=atol * 10)


def technique_kernels(kw):
    want = set()
    if kw.get("momentum") or kw.get("l1"):
        want |= {"fastbp_velocity_apply", "fastbp_bias_velocity"}
    return want


# -- the device's own epochs against the cpu --------------------------------------------------
@pytest.mark.parametrize("name", list(TECHNIQUES))
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_the_captured_epoch_runs_the_techniques(monkeypatch, kernels_run, name, activation):
    """Graph replays (with the last partial batch eager) equal the cpu; no generic loop."""
    kw = TECHNIQUES[name]
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, kw, graphs=True, graph_steps=4,
                                            activation=activation)
    assert be.graph_error is None, be.graph_error
    assert be.last_epoch_path == "graph" and fake.calls["graph"] > 0
    want = technique_kernels(kw)
    if kw.get("dropout"):
        want |= {"fastbp_dropout_step", "fastbp_dropout_key"}  # graph, then the last batch
    assert want <= kernels_run, kernels_run
    assert_same(gpu, cpu, hg, hc)


@pytest.mark.parametrize("name", list(TECHNIQUES))
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_the_eager_epoch_runs_the_techniques(monkeypatch, kernels_run, name, cost):
    kw = TECHNIQUES[name]
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, kw, graphs=False, cost=cost)
    assert be.last_epoch_path == "eager" and fake.calls.get("graph", 0) == 0
    assert fake.calls["gemm"] > 0
    want = technique_kernels(kw) | ({"fastbp_dropout_key"} if kw.get("dropout") else set())
    assert want <= kernels_run and "fastbp_dropout_step" not in kernels_run, kernels_run
    assert_same(gpu, cpu, hg, hc)


@pytest.mark.parametrize("graphs", [True, False])
def test_a_softmax_output_with_every_technique(monkeypatch, graphs):
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, TECHNIQUES["all"], graphs=graphs,
                                            cost="log-likelihood", activation="relu",
                                            graph_steps=3)
    assert be.last_epoch_path == ("graph" if graphs else "eager")
    assert_same(gpu, cpu, hg, hc)


@pytest.mark.parametrize("graphs", [True, False])
def test_float32_follows_the_cpu(monkeypatch, graphs):
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, TECHNIQUES["all"], graphs=graphs,
                                            dtype="float32", graph_steps=4)
    assert be.last_epoch_path == ("graph" if graphs else "eager")
    assert_same(gpu, cpu, hg, hc, atol=2e-5)


def test_progress_slices_keep_the_epochs_masks(monkeypatch):
    """An epoch run in slices (``plan.cursor.first_step`` > 0) replays the graph with the
    slice's first mini-batch in device memory: the masks are the whole epoch's."""
    seen, paths = [], []
    real = CuPyBackend.sgd_epoch

    def sgd_epoch(self, plan):
        total = real(self, plan)
        paths.append((self.last_epoch_path, plan.cursor.first_step))
        return total

    monkeypatch.setattr(CuPyBackend, "sgd_epoch", sgd_epoch)
    fake, be, gpu, cpu, hg, hc = train_pair(
        monkeypatch, TECHNIQUES["all"], graphs=True, n=397, m=4, graph_steps=2,
        progress=lambda done, cost, n: seen.append(done))
    graphs = [first for path, first in paths if path == "graph"]
    assert len(seen) > 20 and len(graphs) > 20 and max(graphs) > 0
    assert all(path != "generic" for path, _ in paths)
    assert fake.calls["capture"] <= 2
    assert_same(gpu, cpu, hg, hc)


def test_one_layer_with_momentum_and_l1(monkeypatch):
    """No hidden layer (the network refuses dropout): momentum and L1 still run on the graph."""
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, {"momentum": 0.6, "l1": 1.0},
                                            graphs=True, sizes=(9, 4), n=23, m=3)
    assert be.last_epoch_path == "graph"
    assert_same(gpu, cpu, hg, hc)


@pytest.mark.parametrize("graphs", [True, False])
def test_a_warm_techniques_epoch_allocates_nothing_per_step(monkeypatch, graphs):
    install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=graphs)
    X, labels = data([10, 6, 4], 203)
    net = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0, momentum=0.5, l1=0.1, dropout=0.2)
    plan.start(be.index_array(np.arange(203)), 7)
    float(be.sgd_epoch(plan))  # warm: programs built, graphs captured
    plan.start(plan.cursor.order, 8)
    before = Counts.allocations
    float(be.sgd_epoch(plan))
    assert be.last_epoch_path == ("graph" if graphs else "eager")
    assert Counts.allocations - before <= 1  # the epoch's cost, read once


def test_a_new_learning_rate_or_momentum_recaptures(monkeypatch):
    """Kernel arguments are frozen in a graph: μ, ηλ/n, ηλ₁/n and p key the captured step."""
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=True)
    X, labels = data([8, 5, 3], 40)
    net = fastbp.Network([8, 5, 3], dtype="float64", seed=1, device=be)
    net.train(X, labels, epochs=1, batch_size=4, eta=1.0, momentum=0.5)
    captures = fake.calls["capture"]
    net.train(X, labels, epochs=1, batch_size=4, eta=1.0, momentum=0.5)
    net.train(X, labels, epochs=1, batch_size=4, eta=1.0, momentum=0.7)
    assert fake.calls["capture"] > captures


def test_the_plain_step_is_unchanged():
    """Without the techniques the captured step launches only the kernels it always did."""
    sizes, n, m = [12, 7, 5], 30, 5
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((k, j)) for j, k in zip(sizes[:-1], sizes[1:])]
    b = [rng.standard_normal((k, 1)) for k in sizes[1:]]
    xs, ys = rng.random((n, sizes[0])), np.eye(sizes[-1])[rng.integers(0, 5, n)]
    prog = StepProgram(np, W, b, xs, ys, fastbp.QuadraticCost, m, 0.1, 1.0)
    assert {item.kernel for item in prog.launches} <= PLAIN_KERNELS
    assert not prog.factors and not prog.dropped


def test_the_captured_step_reads_its_mask_key_from_device_memory():
    """The dropout launches hold the ``keys`` and step-counter buffers, not a number: one graph
    serves every epoch's seed and every step."""
    sizes, n, m = [12, 7, 6, 5], 30, 5
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((k, j)) for j, k in zip(sizes[:-1], sizes[1:])]
    b = [rng.standard_normal((k, 1)) for k in sizes[1:]]
    V = [np.zeros_like(p) for p in (*W, *b)]
    xs, ys = rng.random((n, sizes[0])), np.eye(sizes[-1])[rng.integers(0, 5, n)]
    prog = StepProgram(np, W, b, xs, ys, fastbp.QuadraticCost, m, 0.1, 1.0, velocities=V,
                       mu=0.5, dropout=0.4)
    drops = [item for item in prog.launches if item.kernel == "fastbp_dropout_step"]
    assert len(drops) == 2
    assert all(item.args[5] is prog.keys and item.args[6] is prog.step for item in drops)
    prog.set_keys(0xDEADBEEF, 3)
    assert list(prog.keys) == [0xDEADBEEF, 3]
    prog.order[:] = np.arange(n)
    prog.run(emulator.launch, 2)
    a = prog.activations[0]  # the second step's layer 0: mini-batch 3 + 1
    want = dropout.mask(dropout.step_key(0xDEADBEEF, 4, 0), 0.4, *a.shape)
    np.testing.assert_array_equal(prog.dropped[0], a * want)
    np.testing.assert_array_equal(prog.factors[0], a * (1 - a) * want)


# -- the hash: the emulator and the CUDA source against fastbp.core.dropout -------------------
def test_the_emulated_dropout_kernel_draws_the_cores_mask():
    rng = np.random.default_rng(1)
    for p, (n, m) in [(0.5, (7, 5)), (0.3, (30, 1)), (0.9, (3, 64)), (0.0, (4, 4))]:
        a = rng.random((n, m))
        f, d = np.empty_like(a), np.empty_like(a)
        key = int(rng.integers(1 << 32))
        emulator.dropout_key(a, f, d, n, m, np.uint32(key), 0,
                             np.uint32(dropout.threshold(p)), dropout.scale(p))
        np.testing.assert_array_equal(d, a * dropout.mask(key, p, n, m))
    for seed, step, layer in [(0, 0, 0), (0xFFFFFFFF, 70000, 3), (12345, 1 << 25, 1)]:
        assert emulator.step_key(seed, step & 0xFFFFFFFF, layer) == \
            dropout.step_key(seed, step, layer)


def _device_functions() -> str:
    src = K.RAW_SOURCE
    start = src.index("__device__ __forceinline__ unsigned int fastbp_mix")
    stop = src.index("// One hidden layer's dropout")
    return src[start:stop]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
def test_the_cuda_hash_compiled_on_the_host_equals_the_core(tmp_path: Path):
    """``fastbp_mix`` and ``fastbp_step_key`` from the CUDA source, compiled as host C++, give
    the core's ``mix`` and ``step_key`` (unsigned 32-bit arithmetic)."""
    program = tmp_path / "hash.cpp"
    program.write_text(
        "#define __device__\n#define __forceinline__ inline\n#include <cstdio>\n"
        + _device_functions()
        + "int main() { unsigned int s, t, l, x;\n"
          "  while (std::scanf(\"%u %u %u %u\", &s, &t, &l, &x) == 4)\n"
          "    std::printf(\"%u %u\\n\", fastbp_mix(x), fastbp_step_key(s, t, l));\n"
          "  return 0; }\n")
    exe = tmp_path / "hash"
    subprocess.run(["g++", "-O2", "-o", str(exe), str(program)], check=True, timeout=120)
    rng = np.random.default_rng(2)
    rows = [(0, 0, 0, 0), (0xFFFFFFFF, 0xFFFFFF, 255, 0xFFFFFFFF)]
    rows += [tuple(int(v) for v in rng.integers(0, 1 << 32, 4)) for _ in range(200)]
    rows = [(s, t, l % 16, x) for s, t, l, x in rows]
    out = subprocess.run([str(exe)], input="\n".join(" ".join(map(str, r)) for r in rows),
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    got = np.array(out, dtype=np.uint64).reshape(-1, 2)
    want = [(dropout.mix(x), dropout.step_key(s, t, l)) for s, t, l, x in rows]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint64))


def test_the_plan_keeps_one_program_per_setting(monkeypatch):
    install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=True)
    X, labels = data([8, 5, 3], 40)
    net = fastbp.Network([8, 5, 3], dtype="float64", seed=1, device=be)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0, dropout=0.5)
    plan.start(be.index_array(np.arange(40)))
    be.sgd_epoch(plan)
    keys = list(plan_programs(plan).programs)
    assert [k[0] for k in keys] == ["graph"] and keys[0][-1][-1] == 0.5
