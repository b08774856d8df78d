"""Inputs that reached a traceback now get one line: ``tune`` sizes and samples checked before
any data is made, ``bench --compare`` of a run with a figure <= 0, memory limits of the process
named in out-of-memory messages, Ctrl-C while the command starts, and an interrupted first load
of the compiled CPU kernels."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastbp import cli

ROOT = Path(__file__).resolve().parents[2]
SAVED_RUN = ROOT / "benchmarks" / "results" / "2026-11-25-cpu" / "bench.json"


# -- tune -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--sizes", "784,0"], "every layer size must be >= 1"),
    (["--sizes", "784,30,10", "--batch-sizes", "0"], "--batch-sizes must be >= 1"),
    (["--sizes", "784,30,10", "--samples", "100000000000"], "out of memory on the host: "
     "--samples 100,000,000,000 for --sizes 784,30,10 need"),
    (["--sizes", "784,3000000000,10", "--samples", "100"], "use fewer --samples or smaller"),
    (["--sizes", "100000000000,10", "--samples", "100"], "out of memory on the host"),
])
def test_tune_checks_sizes_and_samples_before_making_data(args, says, capsys, monkeypatch):
    import numpy as np

    def never(*a, **k):
        raise AssertionError("data made before the sizes were checked")

    monkeypatch.setattr(np.random, "default_rng", never)
    assert cli.main(["tune", "--device", "cpu", *args]) == 2
    assert says in capsys.readouterr().err


# -- bench --compare --------------------------------------------------------------------------
@pytest.mark.parametrize("figure", [-5.0, 0.0, float("inf")])
def test_bench_compare_refuses_a_figure_that_is_not_positive(tmp_path, capsys, figure):
    doc = json.loads(SAVED_RUN.read_text())
    timed = [b for b in doc["benchmarks"] if "samples_per_s" in (b.get("extra_info") or {})]
    timed[-1]["extra_info"]["samples_per_s"] = figure
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    assert cli.main(["bench", "--compare", str(SAVED_RUN), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert f"has samples_per_s {figure!r}; a saved run's figures are numbers > 0" in err


# -- memory limits in out-of-memory messages --------------------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status")
def test_out_of_memory_names_the_address_space_limit():
    script = textwrap.dedent("""
        import resource
        import fastbp
        from fastbp.core import memory
        size = memory._status_bytes("VmSize:")
        limit = size + 400_000_000
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        assert memory.process_limits()[0][:2] == ("the address-space limit (ulimit -v)", limit)
        try:
            fastbp.Network([784, 200000, 10], device="cpu")  # 1.25 GB of float64 draws
        except fastbp.DeviceError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "out of memory on cpu" in out.stdout
    assert "the address-space limit (ulimit -v) is" in out.stdout and "of it left" in out.stdout


# -- Ctrl-C while the command starts, and while Numba first loads -----------------------------
def test_the_command_line_module_loads_without_numpy():
    """``fastbp``'s entry point imports NumPy and the devices inside ``main``, where a Ctrl-C
    is one line: ``import fastbp.cli`` alone loads neither."""
    code = ("import sys, fastbp.cli; print(sorted(m for m in ('numpy', 'fastbp.devices', "
            "'fastbp.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.3, 0.6])
def test_ctrl_c_while_the_command_starts_is_one_line(data_dir, delay):
    import signal
    import time

    code = ("import sys; sys.argv = ['fastbp', 'train', '--limit', '1000', '--epochs', '50']; "
            "print('go', flush=True); from fastbp.cli import main; sys.exit(main())")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # the console script's own lines run from here on
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "fastbp: interrupted"


INTERRUPT_IMPORT = """
import sys

class Interrupt:  # Ctrl-C at the moment MODULE starts to load
    fired = False

    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1] and not Interrupt.fired:
            Interrupt.fired = True
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupt())
from fastbp import cli
args = ["train", "--limit", "200", "--epochs", "1", "--device", "cpu-jit", "--quiet"]
first = cli.main(args)
second = cli.main(args)
print(Interrupt.fired, first, second)
"""


@pytest.mark.parametrize("module", ["numba.core.typing.templates", "numba.extending",
                                    "llvmlite.binding", "fastbp_numba.neurons"])
def test_a_second_train_works_after_ctrl_c_while_numba_loads(data_dir, module):
    pytest.importorskip("numba")
    out = subprocess.run([sys.executable, "-c", INTERRUPT_IMPORT, module], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["True", "130", "0"]
