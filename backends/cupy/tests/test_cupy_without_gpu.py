"""The CUDA backend on a machine without a GPU: its errors, and its logic on a NumPy stand-in.

Errors: CuPy missing or broken, CuPy present without a driver or GPU, ``cuda:N`` out of range,
each a ``DeviceError`` with the fix. Logic: the eager step, the captured step (its raw kernels
run by the NumPy emulator), the fallback when capture fails, the switches, all against the
``cpu`` device in float64. None of this proves the CUDA code; ``test_cupy_gpu.py`` does that.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import subprocess
import sys
import weakref
from pathlib import Path

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
    cuda_version,
    graphs_from_env,
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
from fastbp_fake_cupy import Counts, FakeArray, install  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]

NO_DEVICE = "cudaErrorNoDevice: no CUDA-capable device is detected"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def params(net):
    return list(net.weights) + list(net.biases)


# -- found through its entry point, without importing CuPy ---------------------------------
def test_the_plugin_is_registered_as_cuda():
    assert "cuda" in fastbp.backend_names()
    assert fastbp.devices.backend_class("cuda") is CuPyBackend


def test_loading_the_plugin_does_not_import_cupy():
    code = ("import sys, fastbp; from fastbp import devices; devices.backend_class('cuda'); "
            "import fastbp_cupy.graph, fastbp_cupy.kernels; "
            "sys.exit(1 if 'cupy' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


# -- errors, each with its fix ----------------------------------------------------------------
def test_cupy_missing_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([3, 2], device="cuda")
    msg = str(err.value)
    assert "needs CuPy, which is not installed" in msg
    from fastbp.devices.registry import CUDA_INSTALL

    assert CUDA_INSTALL in msg and "[cuda13]" in msg
    assert isinstance(err.value.__cause__, ImportError)


def test_cupy_that_cannot_load_its_libraries(monkeypatch):
    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "cupy":
                raise ImportError("libcudart.so.12: cannot open shared object file",
                                  name="cupy_backends.cuda.api.runtime")
            return None

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    with pytest.raises(fastbp.DeviceError, match="CuPy is installed but cannot be imported "
                       r"\(libcudart.so.12.*reinstall the wheel"):
        fastbp.Network([3, 2], device="cuda")


def test_cupy_without_a_gpu_keeps_cudas_message(monkeypatch):
    install(monkeypatch, no_gpu_error=NO_DEVICE)
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([3, 2], device="cuda")
    msg = str(err.value)
    assert "finds no usable GPU" in msg and NO_DEVICE in msg and "nvidia-smi" in msg
    assert type(err.value.__cause__).__name__ == "CUDARuntimeError"


def test_cuda_visible_devices_is_shown_when_set(monkeypatch):
    install(monkeypatch, no_gpu_error=NO_DEVICE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(fastbp.DeviceError, match="CUDA_VISIBLE_DEVICES=''"):
        fastbp.Network([3, 2], device="cuda:0")


def test_missing_cuda_libraries_say_how_to_install_them(monkeypatch):
    fake = install(monkeypatch)

    def missing():
        raise ImportError('Failure finding "libnvrtc.so.12": No such file')

    fake.cuda.nvrtc.getVersion = missing
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([3, 2], device="cuda")
    msg = str(err.value)
    assert "cannot load a CUDA library" in msg and "libnvrtc.so.12" in msg
    assert 'pip install "cupy-cuda12x[ctk]"' in msg


@pytest.mark.parametrize("n_gpus,spec,want", [
    (1, "cuda:1", "'cuda:1' is out of range: 1 GPU visible here, so use cuda:0"),
    (2, "cuda:7", "'cuda:7' is out of range: 2 GPUs visible here, so use cuda:0 to cuda:1"),
])
def test_cuda_index_out_of_range_says_how_many(monkeypatch, n_gpus, spec, want):
    install(monkeypatch, n_gpus=n_gpus)
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([3, 2], device=spec)
    assert want in str(err.value)


def test_auto_without_a_gpu_chooses_the_cpu_and_says_why(monkeypatch, caplog):
    install(monkeypatch, no_gpu_error=NO_DEVICE)
    from fastbp.devices import registry

    monkeypatch.setattr(registry, "nvidia_driver_present", lambda: True)  # why: worth saying
    monkeypatch.setattr(registry, "_said", set())
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        net = fastbp.Network([3, 2], device="auto")
    # the compiled CPU device when its plugin is installed, else the built-in one
    assert net.device in ("cpu", "cpu-jit")
    assert [r.getMessage() for r in caplog.records if "auto" in r.getMessage()][0].count(
        NO_DEVICE) == 1


def test_auto_with_a_gpu_chooses_it(monkeypatch):
    install(monkeypatch)
    assert fastbp.Network([3, 2], device="auto").device == "cuda"


def test_fastbp_devices_shows_why_cuda_cannot_run(monkeypatch, capsys):
    install(monkeypatch, no_gpu_error=NO_DEVICE)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("cuda [plugin fastbp-cupy"):].splitlines()
    assert block[1].startswith("  cannot run here: ") and NO_DEVICE in block[1]


def test_fastbp_devices_lists_each_gpu(monkeypatch, capsys):
    install(monkeypatch, n_gpus=2)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    block = [line for line in out[out.index("cuda [plugin fastbp-cupy"):].splitlines()
             if "distributed gradient sum" not in line]
    assert block[1].startswith("  cuda  gpu  Fake GPU  80.0 GiB  (")
    assert block[2].startswith("  cuda:1  gpu  Fake GPU  80.0 GiB  (")
    for part in ("cupy 99.0.0-fake", "cuda_runtime 12.9", "cuda_driver 12.8",
                 "compute_capability 9.0", "graphs on"):
        assert part in block[1]


def test_cuda_version_format():
    assert cuda_version(12090) == "12.9" and cuda_version(13000) == "13.0"
    assert cuda_version(0) == "none"


# -- the switches ---------------------------------------------------------------------------
@pytest.mark.parametrize("value,want", [("0", False), ("off", False), ("False", False),
                                        ("1", True), ("", True)])
def test_graphs_switch_from_the_environment(monkeypatch, value, want):
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", value)
    assert graphs_from_env() is want


def test_graphs_constructor_flag_wins_over_the_environment(monkeypatch):
    install(monkeypatch)
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "0")
    assert CuPyBackend().graphs is False
    assert CuPyBackend(graphs=True).graphs is True
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "1")
    assert CuPyBackend(graphs=False).graphs is False


# -- the backend's logic on the stand-in, against the cpu device -----------------------------
def train_pair(monkeypatch, sizes=(12, 7, 5), n=53, m=5, graphs=True, cost="quadratic",
               lmbda=0.1, epochs=2, **backend_attrs):
    """The same network trained on the stand-in GPU and on the cpu, in float64."""
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=graphs)
    for k, v in backend_attrs.items():
        setattr(be, k, v)
    X, labels = data(list(sizes), n)
    gpu = fastbp.Network(list(sizes), dtype="float64", seed=3, device=be, cost=cost)
    cpu = gpu.to("cpu")
    hg = gpu.train(X, labels, epochs=epochs, batch_size=m, eta=0.5, lmbda=lmbda,
                   test=(X, labels))
    hc = cpu.train(X, labels, epochs=epochs, batch_size=m, eta=0.5, lmbda=lmbda,
                   test=(X, labels))
    return fake, be, gpu, cpu, hg, hc


def assert_same_training(gpu, cpu, hg, hc, atol=1e-10):
    for a, b in zip(params(gpu), params(cpu)):
        assert isinstance(a, np.ndarray) and not isinstance(a, FakeArray)
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose([r.cost for r in hg], [r.cost for r in hc], rtol=1e-10)
    assert [r.correct for r in hg] == [r.correct for r in hc]


@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("sizes,m,n", [((12, 7, 5), 5, 53), ((9, 1), 4, 9), ((9, 4), 1, 7)])
def test_eager_epoch_equals_the_cpu(monkeypatch, cost, sizes, m, n):
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, sizes=sizes, m=m, n=n, graphs=False,
                                            cost=cost)
    assert be.last_epoch_path == "eager" and fake.calls.get("graph", 0) == 0
    assert fake.calls["gemm"] > 0 and fake.calls["elementwise"] > 0 and fake.calls["raw"] > 0
    assert_same_training(gpu, cpu, hg, hc)


@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("sizes,m,n", [((12, 7, 5), 5, 53), ((9, 4), 1, 7), ((9, 6, 1), 3, 10),
                                       ((70, 9, 8, 6, 3), 16, 100), ((6, 5, 4), 3, 9)])
def test_captured_epoch_equals_the_cpu(monkeypatch, cost, sizes, m, n):
    """The graph path: no cuBLAS and no allocation while capturing, same numbers as the cpu."""
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, sizes=sizes, m=m, n=n, cost=cost,
                                            graph_steps=4)
    assert be.graph_error is None, be.graph_error
    assert be.last_epoch_path == "graph" and fake.calls["graph"] > 0
    assert_same_training(gpu, cpu, hg, hc)


def test_graphs_off_by_environment(monkeypatch):
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "0")
    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, graphs=None)
    assert be.last_epoch_path == "eager" and fake.calls.get("graph", 0) == 0
    assert_same_training(gpu, cpu, hg, hc)


def test_large_batches_and_networks_train_eagerly(monkeypatch):
    fake, be, *_ = train_pair(monkeypatch, m=20, graph_max_batch=16)
    assert be.last_epoch_path == "eager"
    fake, be, *_ = train_pair(monkeypatch, graph_max_weights=10)
    assert be.last_epoch_path == "eager"


def test_a_custom_cost_takes_the_generic_loop_without_turning_graphs_off(monkeypatch):
    class Halved(fastbp.QuadraticCost):
        @staticmethod
        def output_error(backend, a, y, out, scratch):
            return fastbp.QuadraticCost.output_error(backend, a, y, out, scratch)

    fake, be, gpu, cpu, hg, hc = train_pair(monkeypatch, cost=Halved)
    assert be.last_epoch_path == "generic" and be.graph_error is None and be.raw_error is None
    assert_same_training(gpu, cpu, hg, hc)


def test_float16_takes_the_generic_loop(monkeypatch):
    install(monkeypatch)
    X, labels = data([6, 5, 3], 24)
    net = fastbp.Network([6, 5, 3], dtype="float16", seed=1, device="cuda")
    net.train(X, labels, epochs=1, batch_size=4, eta=1.0)
    assert net.backend.last_epoch_path == "generic" and net.backend.graph_error is None


def test_a_failed_capture_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    fake = install(monkeypatch)
    fake.fail_capture = "cudaErrorStreamCaptureUnsupported: operation not permitted"
    be = CuPyBackend(dtype="float64")
    X, labels = data([8, 5, 3], 40)
    gpu = fastbp.Network([8, 5, 3], dtype="float64", seed=1, device=be)
    cpu = gpu.to("cpu")
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        hg = gpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    hc = cpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    warnings = [r.getMessage() for r in caplog.records if "CUDA" in r.getMessage()]
    assert len(warnings) == 1 and "cudaErrorStreamCaptureUnsupported" in warnings[0]
    assert be.graph_error is not None and be.last_epoch_path == "eager"
    assert fake.calls["capture"] == 1  # not tried again
    assert_same_training(gpu, cpu, hg, hc)


def test_raw_kernels_that_do_not_build_fall_back_to_the_generic_loop(monkeypatch, caplog):
    install(monkeypatch).fail_compile = "nvrtc: error: invalid value for --gpu-architecture"
    be = CuPyBackend(dtype="float64")
    X, labels = data([8, 5, 3], 40)
    gpu = fastbp.Network([8, 5, 3], dtype="float64", seed=1, device=be)
    cpu = gpu.to("cpu")
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        hg = gpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    hc = cpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    warnings = [r.getMessage() for r in caplog.records if "CUDA" in r.getMessage()]
    assert len(warnings) == 1 and "invalid value for --gpu-architecture" in warnings[0]
    assert be.raw_error is not None and be.last_epoch_path == "generic"
    assert_same_training(gpu, cpu, hg, hc)


def test_progress_chunks_replay_the_same_graph(monkeypatch):
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64")
    X, labels = data([10, 6, 4], 97)
    gpu = fastbp.Network([10, 6, 4], dtype="float64", seed=2, device=be)
    cpu = gpu.to("cpu")
    seen = []
    gpu.train(X, labels, epochs=2, batch_size=4, eta=1.0,
              progress=lambda done, cost, n: seen.append(done))
    cpu.train(X, labels, epochs=2, batch_size=4, eta=1.0)
    assert seen[-1] == 97 and len(seen) > 4
    assert fake.calls["graph"] > 0 and be.graph_error is None
    assert fake.calls["capture"] <= 2  # a graph of K steps and one of 1 step, captured once
    for a, b in zip(params(gpu), params(cpu)):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_feedforward_backprop_and_the_round_trip(monkeypatch):
    install(monkeypatch)
    X, labels = data([7, 5, 3], 6)
    Y = np.eye(3)[:, labels]
    gpu = fastbp.Network([7, 5, 3], dtype="float64", seed=4, device="cuda")
    cpu = gpu.to("cpu")
    assert cpu.device == "cpu" and type(cpu._weights[0]) is np.ndarray
    out = gpu.feedforward(X)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, cpu.feedforward(X), atol=1e-12)
    for a, b in zip(sum(gpu.backprop(X, Y), []), sum(cpu.backprop(X, Y), [])):
        assert type(a) is np.ndarray
        np.testing.assert_allclose(a, b, atol=1e-12)
    back = cpu.to("cuda")
    assert isinstance(back._weights[0], FakeArray)
    for a, b in zip(params(back), params(gpu)):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_moved_once_and_device_arrays_used_in_place(monkeypatch):
    fake = install(monkeypatch)
    X, labels = data([7, 5, 3], 6)
    gpu = fastbp.Network([7, 5, 3], dtype="float64", seed=4, device="cuda")
    on_device = fake.asarray(X)
    np.testing.assert_allclose(gpu.feedforward(on_device), gpu.feedforward(X), atol=0)
    net_labels = fake.asarray(labels)
    assert gpu.count_correct(on_device, net_labels) == gpu.count_correct(X, labels)


def test_an_array_on_another_gpu_is_refused(monkeypatch):
    fake = install(monkeypatch, n_gpus=2)
    gpu = fastbp.Network([3, 2], dtype="float64", seed=4, device="cuda:0")
    X = fake.asarray(np.ones((3, 4)))
    X.device_id = 1
    with pytest.raises(fastbp.DeviceError, match=r"a is on cuda:1, but the network is on "
                       r"'cuda'.*cupy.cuda.Device\(0\).*net.to\('cuda:1'\)"):
        gpu.feedforward(X)


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


def load_speed_cuda():
    path = ROOT / "benchmarks" / "speed_cuda.py"
    if not path.exists():
        pytest.skip("benchmarks/ is not in this checkout")
    spec = importlib.util.spec_from_file_location("speed_cuda_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
