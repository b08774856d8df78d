"""The CUDA backend on a machine without a GPU: its errors, and its logic on a NumPy stand-in.

Errors: CuPy missing or broken, CuPy present without a driver or GPU, ``cuda:N`` out of range,
each a ``DeviceError`` with the fix. Logic: the eager step, the captured step (its raw kernels
run by the NumPy emulator), the fallback when capture fails, the switches, all against the
``cpu`` device in float64 (more in ``test_cupy_findings.py``). None of this proves the CUDA
code; ``test_cupy_gpu.py`` does that.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp
import fastbp.core.epoch
from fastbp.cli import main

fastbp_cupy = pytest.importorskip("fastbp_cupy")
from fastbp_cupy.backend import (  # noqa: E402
    CuPyBackend,
    cuda_version,
    graphs_from_env,
)
from fastbp_fake_cupy import FakeArray, install  # noqa: E402
from stand_in import (  # noqa: E402
    assert_same_training,
    clean_environment,  # noqa: F401 - the autouse fixture
    data,
    params,
    train_pair,
)

ROOT = Path(__file__).resolve().parents[3]

NO_DEVICE = "cudaErrorNoDevice: no CUDA-capable device is detected"


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
