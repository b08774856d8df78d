"""Choosing a device: the grammar, precedence, use_device, the registry, errors, `fastbp devices`.

None of these needs a GPU or CuPy: plugins and foreign arrays are simulated.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.devices import registry as devices
from fastbp.devices.backend import array_device
from fastbp.devices.cpu.backend import NumpyBackend


def named(name: str) -> type[NumpyBackend]:
    """A NumPy backend under another name, to watch which device a call picked."""
    return type(f"Backend_{name}", (NumpyBackend,), {"name": name})


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, with three test devices and no environment default."""
    monkeypatch.setattr(devices, "_registered", dict(devices._registered))
    monkeypatch.delenv("FASTBP_DEVICE", raising=False)
    for name in ("dev-a", "dev-b", "dev-c"):
        fastbp.register_backend(name, named(name))
    return devices._registered


@pytest.fixture
def no_plugins(monkeypatch, registry):
    """As if no plugin distribution were installed."""
    monkeypatch.setattr(devices, "_entry_points", lambda: {})
    for name in list(registry):
        if name in devices.SHIPPED_PLUGINS:
            del registry[name]


class ForeignArray:
    """Quacks like a CUDA array of another library: DLPack says it lives on GPU 1."""

    shape = (3, 4)

    def __dlpack_device__(self):
        return (2, 1)


# -- the grammar ------------------------------------------------------------------------
@pytest.mark.parametrize("spec,want", [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)),
                                       ("cuda:3", ("cuda", 3)), (" CUDA:1 ", ("cuda", 1)),
                                       ("array-api:2", ("array-api", 2)), ("auto", ("auto", 0))])
def test_parse_device(spec, want):
    assert devices.parse_device(spec) == want


@pytest.mark.parametrize("spec", ["cuda:x", "cuda:", "cuda:-1", ":0", "", "cu da", "cuda:1:2"])
def test_malformed_device_strings(spec, registry):
    with pytest.raises(fastbp.DeviceError, match="malformed device string"):
        fastbp.Network([2, 2], device=spec)


def test_gpu_is_not_a_device_name(registry):
    with pytest.raises(fastbp.DeviceError, match="malformed device string 'gpu'.*'cuda'"):
        fastbp.Network([2, 2], device="gpu")


def test_a_device_is_a_string(registry):
    with pytest.raises(fastbp.DeviceError, match="string like 'cpu'"):
        fastbp.Network([2, 2], device=0)


def test_cpu_has_no_index(registry):
    with pytest.raises(fastbp.DeviceError, match="cpu device has no index"):
        fastbp.Network([2, 2], device="cpu:1")


def test_unknown_device_lists_the_available_ones(registry):
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([2, 2], device="tpu")
    msg = str(err.value)
    assert "unknown device 'tpu'" in msg
    for name in ("cpu", "dev-a", "auto"):
        assert name in msg


def test_cuda_without_the_plugin_names_the_install_command(no_plugins):
    with pytest.raises(fastbp.DeviceError) as err:
        fastbp.Network([2, 2], device="cuda:0")
    assert devices.CUDA_INSTALL in str(err.value)
    assert "cuda" in str(err.value)


def test_invalid_backend_names_are_refused(registry):
    for bad in ("auto", "Bad Name", "x:1"):
        with pytest.raises(fastbp.DeviceError, match="not valid"):
            fastbp.register_backend(bad, NumpyBackend)


def test_a_broken_plugin_is_a_device_error(monkeypatch, registry):
    class BrokenEntryPoint:
        name = "broken"

        def load(self):
            raise ImportError("libfoo.so: cannot open shared object file")

    monkeypatch.setattr(devices, "_entry_points", lambda: {"broken": BrokenEntryPoint()})
    with pytest.raises(fastbp.DeviceError, match="plugin 'broken' failed to load: libfoo"):
        fastbp.Network([2, 2], device="broken")


# -- precedence ---------------------------------------------------------------------------
def auto_choice() -> str:
    """What the default, ``auto``, picks here (``cpu-jit`` without a GPU)."""
    return devices.resolve("auto").device


def test_precedence_argument_use_device_environment_default(monkeypatch, registry):
    assert devices.requested_device() == "auto"
    assert fastbp.Network([2, 2]).device == auto_choice()
    monkeypatch.setenv("FASTBP_DEVICE", "dev-c")
    assert fastbp.Network([2, 2]).device == "dev-c"
    with fastbp.use_device("dev-b"):
        assert fastbp.Network([2, 2]).device == "dev-b"
        assert fastbp.Network([2, 2], device="dev-a").device == "dev-a"
        with fastbp.use_device("dev-a"):
            assert fastbp.Network([2, 2]).device == "dev-a"
        assert fastbp.Network([2, 2]).device == "dev-b"
    assert fastbp.Network([2, 2]).device == "dev-c"


def test_environment_is_read_when_a_device_is_needed(monkeypatch, registry):
    """FASTBP_DEVICE set after `import fastbp` still counts (it is never cached)."""
    monkeypatch.setenv("FASTBP_DEVICE", "dev-a")
    assert fastbp.Network([2, 2]).device == "dev-a"
    monkeypatch.setenv("FASTBP_DEVICE", "dev-b")
    assert fastbp.Network([2, 2]).device == "dev-b"
    monkeypatch.setenv("FASTBP_DEVICE", "")
    assert fastbp.Network([2, 2]).device == auto_choice()


def test_a_bad_environment_value_is_named(monkeypatch, registry):
    monkeypatch.setenv("FASTBP_DEVICE", "cuda:x")
    with pytest.raises(fastbp.DeviceError, match="'cuda:x'"):
        fastbp.Network([2, 2])


def test_use_device_is_restored_after_an_exception(registry):
    with pytest.raises(ZeroDivisionError):
        with fastbp.use_device("dev-a"):
            assert devices.requested_device() == "dev-a"
            1 / 0  # noqa: B018
    assert devices.requested_device() == "auto"


def test_use_device_refuses_a_malformed_string_at_once(registry):
    with pytest.raises(fastbp.DeviceError, match="malformed"):
        with fastbp.use_device("cuda:x"):
            pass  # pragma: no cover
    assert devices.requested_device() == "auto"


def test_use_device_is_isolated_across_threads(registry):
    inside = threading.Barrier(2)
    seen: dict[str, str] = {}

    def with_block():
        with fastbp.use_device("dev-a"):
            inside.wait()
            seen["with"] = fastbp.Network([2, 2]).device
            inside.wait()

    def without_block():
        inside.wait()
        seen["without"] = fastbp.Network([2, 2]).device
        inside.wait()

    threads = [threading.Thread(target=with_block), threading.Thread(target=without_block)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == {"with": "dev-a", "without": auto_choice()}
    assert devices.requested_device() == "auto"


@pytest.fixture
def driver(monkeypatch):
    """Whether this test's machine has an NVIDIA driver (``driver(True)``); the hint's once."""
    monkeypatch.setattr(devices, "_said", set())

    def have(present: bool) -> None:
        monkeypatch.setattr(devices, "nvidia_driver_present", lambda: present)

    return have


def test_auto_falls_back_to_the_cpu_and_says_why_once_where_a_gpu_could_run(no_plugins, caplog,
                                                                            driver):
    driver(True)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        net = fastbp.Network([2, 2], device="auto")
        fastbp.Network([2, 2], device="auto")
    assert net.device == "cpu"
    lines = [r.getMessage() for r in caplog.records if "auto" in r.getMessage()]
    assert len(lines) == 2 and "chose cpu" in lines[0]
    assert devices.CUDA_INSTALL in lines[0] and "backends/cupy" not in lines[1]


def test_auto_without_an_nvidia_driver_gives_no_gpu_hint(no_plugins, caplog, driver):
    driver(False)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        net = fastbp.Network([2, 2], device="auto")
    lines = [r.getMessage() for r in caplog.records if "auto" in r.getMessage()]
    assert lines == [f"fastbp: device 'auto' chose {net.device} (no NVIDIA GPU here)"]


def test_auto_prefers_the_compiled_cpu_device_without_a_gpu(no_plugins, caplog, driver):
    driver(True)
    fastbp.register_backend("cpu-jit", named("cpu-jit"))
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        net = fastbp.Network([2, 2], device="auto")
    assert net.device == "cpu-jit"
    lines = [r.getMessage() for r in caplog.records if "auto" in r.getMessage()]
    assert len(lines) == 1 and "chose cpu-jit (no usable GPU" in lines[0]


def test_auto_takes_a_working_gpu(registry, caplog, driver):
    driver(True)
    fastbp.register_backend("cuda", named("cuda"))
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        net = fastbp.Network([2, 2], device="auto")
    assert net.device == "cuda"
    assert any("chose cuda" in r.getMessage() for r in caplog.records)


def test_a_backend_instance_is_a_device(registry):
    be = named("dev-a")(dtype="float64")
    assert fastbp.Network([2, 2], device=be, dtype="float64").backend is be
    assert fastbp.Network([2, 2], device=be, dtype="float32").backend.dtype == "float32"


# -- moving between devices -----------------------------------------------------------------
def test_to_another_device_keeps_parameters_and_reads_numpy(registry):
    net = fastbp.Network([4, 3, 2], seed=5, device="cpu")
    other = net.to("dev-a")
    assert other.device == "dev-a" and net.device == "cpu"
    for a, b in zip(list(net.weights) + list(net.biases), list(other.weights) + list(other.biases)):
        assert isinstance(b, np.ndarray)
        np.testing.assert_array_equal(a, b)
    back = other.to("cpu")
    X = np.random.default_rng(0).random((4, 5))
    np.testing.assert_array_equal(back.feedforward(X), net.feedforward(X))


def test_array_device_reads_the_protocols():
    assert array_device(np.zeros(2)) is None
    assert array_device([1.0, 2.0]) is None
    assert array_device(ForeignArray()) == "cuda:1"

    class CudaOnly:
        __cuda_array_interface__ = {}

    assert array_device(CudaOnly()) == "cuda"


@pytest.mark.parametrize("call", ["feedforward", "backprop_y", "train", "train_test", "labels",
                                  "weights"])
def test_an_array_on_another_device_is_refused_with_the_fix(call, registry):
    net = fastbp.Network([3, 2], seed=1, device="cpu")
    X, Y = np.ones((3, 4)), np.eye(2)[:, [0, 1, 0, 1]]
    gpu = ForeignArray()
    with pytest.raises(fastbp.DeviceError) as err:
        if call == "feedforward":
            net.feedforward(gpu)
        elif call == "backprop_y":
            net.backprop(X, gpu)
        elif call == "train":
            net.train(gpu, Y, epochs=1, batch_size=2, eta=1.0)
        elif call == "train_test":
            net.train(X, Y, epochs=1, batch_size=2, eta=1.0, test=(gpu, [0, 1, 0, 1]))
        elif call == "labels":
            net.count_correct(X, gpu)
        else:
            net.weights[0] = gpu
    msg = str(err.value)
    assert "cuda:1" in msg and "'cpu'" in msg and "net.to('cuda:1')" in msg


# -- import hygiene ---------------------------------------------------------------------------
def test_import_fastbp_imports_no_gpu_library():
    code = ("import sys, fastbp; fastbp.backend_names(); fastbp.Network([3, 2]).feedforward("
            "[[0.0], [1.0], [0.5]]); bad = [m for m in ('cupy', 'cupy_backends', 'torch', "
            "'jax') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PATH": "", "FASTBP_DEVICE": "cpu"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- fastbp devices -----------------------------------------------------------------------------
def test_fastbp_devices_lists_backends_and_why_one_cannot_run(monkeypatch, registry, capsys):
    class NoHardware(NumpyBackend):
        name = "no-hw"

        @classmethod
        def probe(cls):
            raise fastbp.DeviceError("no accelerator found (driver says: no device)")

    class Crashes(NumpyBackend):
        name = "crashes"

        def __init__(self, **kw):
            raise ValueError("bug in the plugin")

    fastbp.register_backend("no-hw", NoHardware)
    fastbp.register_backend("crashes", Crashes)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("fastbp ") and "device in force: auto, which chooses " in lines[0]
    assert lines[1].startswith("plans: ") and "FASTBP_PLAN=" in lines[1]  # mode and cache
    assert lines[2] == "cpu [built in]"
    assert lines[3].startswith("  cpu  cpu  ") and f"numpy {np.__version__}" in lines[3]
    assert "blas " in lines[3]
    assert "dev-a [registered in code]" in out
    assert "no-hw [registered in code]\n  cannot run here: no accelerator found" in out
    assert "crashes [registered in code]\n  cannot run here: the backend failed: ValueError" in out
    # the CUDA plugin is listed whether or not it is installed, with why it cannot run here
    cuda = out[out.index("\ncuda ["):]
    assert "cannot run here" in cuda.splitlines()[2] or "  cuda:0  gpu  " in cuda


def test_fastbp_devices_says_how_distributed_training_sums_gradients(monkeypatch, capsys):
    import importlib.util

    from fastbp.cli import devices as cmd

    assert main(["devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cpu = lines.index("cpu [built in]")
    want = "mpi" if importlib.util.find_spec("mpi4py") else "unavailable (mpi4py not installed"
    assert lines[cpu + 2].startswith(f"    distributed gradient sum: {want}")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert cmd.distributed_path("cpu").startswith("unavailable (mpi4py not installed: pip install")


def test_fastbp_devices_json(registry, capsys):
    import json

    assert main(["devices", "--json"]) == 0
    report = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert report["cpu"]["devices"][0]["numpy"] == np.__version__
    assert report["cpu"]["error"] is None
    assert "cuda" in report


def test_fastbp_devices_without_plugins_says_how_to_install(no_plugins, capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert 'cuda [not installed]\n  cannot run here: device \'cuda\' needs its plugin' in out
    assert devices.CUDA_INSTALL in out


@pytest.mark.parametrize("argv,env,want", [
    (["train", "--device", "gpu", "--epochs", "0"], None, "malformed device string 'gpu'"),
    (["train", "--epochs", "0"], "cuda:x", "malformed device string 'cuda:x'"),
    (["train", "--device", "tpu:0", "--epochs", "0"], None, "unknown device 'tpu'"),
])
def test_the_command_line_reports_device_errors(monkeypatch, registry, capsys, argv, env, want):
    if env is not None:
        monkeypatch.setenv("FASTBP_DEVICE", env)
    assert main(argv) == 2
    assert want in capsys.readouterr().err
