"""What a new user meets outside the command line: ``network2.py``'s initial weights, the reason
``cuda`` gives without an NVIDIA driver, progress on a terminal that reports 0 columns, learning
curves that never share an axis between two cost functions, and the benchmark report's peak
and load flags."""

from __future__ import annotations

import inspect
import io
import os
import sys

import numpy as np
import pytest
from conftest import random_batch

import fastbp
from fastbp.bench import flops, report
from fastbp.core.records import EpochRecord
from fastbp.devices import registry
from fastbp.model import progress

SIZES = [784, 30, 10]


# -- network2.py's initial weights -------------------------------------------------------------
def test_cross_entropy_starts_from_network2s_scaled_weights():
    net = fastbp.Network(SIZES, cost=fastbp.CrossEntropyCost, seed=1, dtype="float64")
    assert net.init == "scaled"
    assert np.std(net.weights[0]) == pytest.approx(1 / np.sqrt(784), rel=0.05)
    assert np.std(net.biases[0]) == pytest.approx(1.0, rel=0.3)
    assert fastbp.Network(SIZES, cost="cross-entropy", seed=1).init == "scaled"
    assert fastbp.Network(SIZES, seed=1).init == "standard"  # network.py, chapter 1
    given = fastbp.Network(SIZES, cost=fastbp.CrossEntropyCost, init="standard", seed=1)
    assert given.init == "standard" and np.std(given.weights[0]) > 0.9


def test_network2s_initializers():
    net = fastbp.Network(SIZES, seed=1, dtype="float64")
    before = [w.copy() for w in net.weights]
    net.default_weight_initializer()
    assert net.init == "scaled"
    assert np.std(net.weights[0]) == pytest.approx(1 / np.sqrt(784), rel=0.05)
    assert np.std(net.weights[1]) == pytest.approx(1 / np.sqrt(30), rel=0.3)
    net.large_weight_initializer()
    assert net.init == "standard" and np.std(net.weights[0]) == pytest.approx(1.0, rel=0.05)
    assert not any(np.array_equal(a, b) for a, b in zip(before, net.weights))  # drawn anew
    assert [w.shape for w in net.weights] == [(30, 784), (10, 30)]
    assert [b.shape for b in net.biases] == [(30, 1), (10, 1)]


def test_initializers_follow_the_networks_seed():
    a, b = fastbp.Network(SIZES, seed=5), fastbp.Network(SIZES, seed=5)
    a.default_weight_initializer()
    b.default_weight_initializer()
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights))


# -- cuda without an NVIDIA driver -------------------------------------------------------------
INSUFFICIENT = ("device 'cuda': CuPy 14.0 finds no usable GPU. CUDA says: "
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
                "runtime version. Check the NVIDIA driver (nvidia-smi)")


class NoDriverBackend(fastbp.NumpyBackend):
    """Fails as CuPy does on a machine without the NVIDIA driver."""

    def __init__(self, *args, **kwargs):
        raise fastbp.DeviceError(INSUFFICIENT)

    @classmethod
    def probe(cls):
        raise fastbp.DeviceError(INSUFFICIENT)


@pytest.fixture
def no_driver(monkeypatch):
    monkeypatch.setattr(registry, "nvidia_driver_present", lambda: False)
    monkeypatch.setitem(registry._registered, "fake-cuda", NoDriverBackend)


def test_no_driver_is_said_plainly(no_driver):
    report_ = next(r for r in registry.probe_all() if r.name == "fake-cuda")
    assert "insufficient" not in report_.error
    assert "no NVIDIA driver" in report_.error and "NVIDIA GPU" in report_.error
    with pytest.raises(fastbp.DeviceError) as info:
        fastbp.Network([4, 2], device="fake-cuda")
    assert "insufficient" not in str(info.value) and "no NVIDIA driver" in str(info.value)


def test_a_driver_too_old_keeps_cudas_reason(monkeypatch):
    monkeypatch.setattr(registry, "nvidia_driver_present", lambda: True)
    assert registry.no_driver_reason(INSUFFICIENT) is None
    assert registry.no_driver_reason("some other reason") is None


# -- progress on a terminal of 0 columns -------------------------------------------------------
def record(epoch: int) -> EpochRecord:
    return EpochRecord(epoch=epoch, cost=0.5, accuracy=0.9, correct=9, seconds=0.1,
                       samples_per_s=100.0)


@pytest.fixture
def zero_columns_terminal():
    """A real terminal (a pseudo-terminal) that reports 0 × 0, as some do."""
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    stream = os.fdopen(slave, "w")
    assert stream.isatty() and os.get_terminal_size(slave).columns == 0
    yield stream, master
    stream.close()
    os.close(master)


def read_all(fd: int) -> str:
    import select

    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out.decode()


def test_zero_columns_get_plain_epoch_lines(zero_columns_terminal):
    pytest.importorskip("tqdm")
    stream, master = zero_columns_terminal
    shown = progress.reporter(stream=stream, n_test=10)
    assert isinstance(shown, progress.PlainLines)
    shown(record(0), None)
    assert "Epoch 0: test 9 / 10" in read_all(master)


def test_a_bar_whose_terminal_shrinks_to_nothing_still_prints_the_epoch(zero_columns_terminal):
    pytest.importorskip("tqdm")
    stream, master = zero_columns_terminal
    bar = progress.EpochBar(n_test=10, stream=stream)
    bar.hook(0, 0.0, 20)
    bar.hook(20, 10.0, 20)
    bar(record(0), None)
    assert "Epoch 0: test 9 / 10" in read_all(master)


def test_training_on_a_zero_columns_terminal_shows_every_epoch(zero_columns_terminal, rng):
    pytest.importorskip("tqdm")
    stream, master = zero_columns_terminal
    X, Y = random_batch(rng, [6, 4, 3], 30)
    shown = progress.reporter(stream=stream, epochs=3, n_test=30)
    fastbp.Network([6, 4, 3], seed=1).train(X, Y, epochs=3, batch_size=5, eta=1.0,
                                            test=(X, Y.argmax(axis=0)), callback=shown)
    text = read_all(master)
    assert all(f"Epoch {e}:" in text for e in range(3)), text


# -- learning curves ---------------------------------------------------------------------------
def drawn(monkeypatch):
    """Capture the figures ``fastbp.io.plots`` saves."""
    from fastbp.io import plots

    figures = []
    real = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return plots, figures


def history(costs: list[float]) -> list[EpochRecord]:
    return [EpochRecord(epoch=i, cost=c, accuracy=0.9 + i / 100, correct=None, seconds=0.1,
                        samples_per_s=1.0) for i, c in enumerate(costs)]


def test_two_cost_functions_never_share_an_axis(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    plots, figures = drawn(monkeypatch)
    runs = {"quadratic": history([0.1, 0.05]), "cross-entropy": history([0.6, 0.4])}
    plots.learning_curves(runs, tmp_path / "lc.png",
                          costs={"quadratic": "quadratic", "cross-entropy": "cross-entropy"})
    acc, *cost_axes = figures[-1].axes
    assert len(cost_axes) == 2
    assert [len(ax.get_lines()) for ax in cost_axes] == [1, 1]
    assert "quadratic" in cost_axes[0].get_ylabel()
    assert "cross-entropy" in cost_axes[1].get_ylabel()
    assert len(acc.get_lines()) == 2  # accuracy is one measure: one axis


def test_one_cost_function_is_one_panel_and_epochs_count_from_0(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    plots, figures = drawn(monkeypatch)
    plots.learning_curves(history([0.3, 0.2, 0.1]), tmp_path / "lc.png", costs="quadratic")
    axes = figures[-1].axes
    assert len(axes) == 2
    for ax in axes:
        assert list(ax.get_lines()[0].get_xdata()) == [0, 1, 2]  # as "Epoch 0" ... printed
        assert ax.get_xlabel() == "epoch"


# -- the benchmark report ----------------------------------------------------------------------
def test_the_gemm_peak_is_the_best_of_several_shapes():
    peak = flops.gemm_peak(fastbp.NumpyBackend("float64"), n=64, repeats=2)
    assert len(peak["tried"]) == 3 and peak["shape"] in [t["shape"] for t in peak["tried"]]
    assert peak["gflops"] == pytest.approx(max(t["gflops"] for t in peak["tried"]), rel=1e-2)


def row(pct: float, others: float) -> report.Row:
    return report.Row("step", "cpu", "matrix", "784-30-10", 10, "float32", 1000.0, 1.0, pct,
                      others)


def test_the_table_caps_and_flags_figures_taken_under_load():
    text = report.table([row(50.0, 0.0), row(113.0, 0.0), row(60.0, 1.0)])
    assert "113" not in text and ">100 *" in text and "1.00 !" in text
    assert "* above the GEMM peak" in text and "! other processes" in text
    assert "*" not in report.table([row(50.0, 0.0)])


def test_the_chart_tells_lines_apart_and_keeps_its_legend_below(tmp_path, monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: saved.append(self))
    rows = [report.Row("epoch", dev, impl, "784-30-10", b, dt, 1000.0 * b, 1.0, 50.0, 0.0)
            for dev in ("cpu", "cpu-jit") for impl in ("matrix", "loop")
            for dt in ("float32", "float64") for b in (10, 100)]
    assert report.chart(rows, tmp_path / "c.png")
    fig = saved[-1]
    lines = fig.axes[0].get_lines()
    styles = {(ln.get_color(), ln.get_marker()) for ln in lines}
    assert len(styles) == 4  # 4 device × implementation lines, each its own look
    legend = fig.legends[0]
    assert legend._loc == 8  # lower center, under the panels
    for axis in (fig.axes[0].xaxis, fig.axes[0].yaxis):
        assert type(axis.get_minor_formatter()).__name__ == "NullFormatter"
    plt.close("all")


def test_the_bench_header_names_the_gemm_library_that_ran():
    from fastbp.cli.bench import _header

    class Peaks:
        def all(self):
            return [{"device": "cpu", "dtype": "float32", "gflops": 300.0}]

    machine = {"cpu": {"model": "X", "usable_cores": 2}, "load_average": [0.1],
               "blas": [{"user_api": "blas", "internal_api": "openblas", "shipped_by": "numpy",
                         "num_threads": 2}],
               "devices": {"cpu": {"gemm": "mkl 2026.2 (intel, 2 threads)"},
                           "cpu-jit": {"gemm": "mkl 2026.2 (intel, 2 threads)"}}}
    head = _header(machine, Peaks())
    assert "GEMMs: cpu, cpu-jit: mkl 2026.2" in head
    assert "BLAS loaded: numpy: openblas" in head


# -- the robustness suite's skips --------------------------------------------------------------
def test_mnist_fuzz_skips_before_hypothesis_runs():
    """A skip raised inside a hypothesis test reads "Failing explicit example" in the summary;
    the test that needs MNIST skips by a mark instead."""
    from robustness import test_fuzz_idx

    test = test_fuzz_idx.test_real_mnist_labels_truncated_or_flipped
    marks = [m.name for m in getattr(test, "pytestmark", [])]
    assert "skipif" in marks
    assert "pytest.skip(" not in inspect.getsource(test)


def test_stringio_is_not_a_terminal_width():
    assert progress.terminal_columns(io.StringIO()) is None


@pytest.mark.parametrize("size,narrow", [((80, 24), False), ((0, 0), True), ((80, 0), True),
                                         ((30, 24), True)])
def test_a_terminal_without_rows_or_columns_gets_plain_lines(monkeypatch, size, narrow):
    """A terminal reporting 0 rows (or too few columns) shows no bar: the plain per-epoch
    lines print instead."""
    import os

    monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size(size))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

        def fileno(self) -> int:
            return 1

    assert progress.too_narrow(Tty()) is narrow
    if narrow:
        assert isinstance(progress.reporter(stream=Tty()), progress.PlainLines)
