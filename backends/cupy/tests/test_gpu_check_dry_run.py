"""``benchmarks/gpu/check.sh --dry-run``: the GPU check runs every stage on the CPU stand-in.

A GPU machine reaches this project for minutes at a time; the script that uses it must not die
of a typo, a missing import or a wrong path, and must not report failure when it succeeded. The
dry run runs each stage against the NumPy stand-in for CuPy, with small sizes, produces the JSON
and Markdown reports and exits 0, also from a fresh virtual environment where pip cannot build
the checkout (no ``wheel``, no setuptools) and the checkout on ``PYTHONPATH`` replaces it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "gpu" / "check.sh"
STAGES = ("environment", "install", "devices", "plans", "gpu-tests", "kernels", "conv", "timing",
          "sanitizer-memcheck", "sanitizer-racecheck")
MUST_PASS = ("environment", "devices", "plans", "gpu-tests", "kernels", "conv", "timing",
             "sanitizer-memcheck")
FILES = {"check.log", "tests.log", "kernels.log", "conv.log", "timing.log", "sanitizer.log",
         "results.json", "results.md"}
# the slow stages, left out where a test checks the install or the sanitizer alone
SLOW = "timing,gpu-tests,plans,kernels,conv"

pytestmark = [
    pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/gpu is not in this checkout"),
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                       reason="needs bash and timeout"),
]


def run_check(tmp_path: Path, python: str = sys.executable, **env_extra: str
              ) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """The dry run into ``tmp_path/out``: the process, the folder, results.json."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FASTBP_DEVICE", "FASTBP_CUDA", "CUDA_VISIBLE", "FASTBP_CHECK",
                                "FASTBP_SANITIZER"))}
    env.update(PYTHON=python, TMPDIR=str(tmp_path), **env_extra)
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    result = json.loads((out / "results.json").read_text())
    return proc, out, result


def stages_of(result: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in result["stages"]}


def installed(stages: dict[str, dict]) -> bool:
    """pip installed the checkout, or it could not and the fallback did (install 'replaced')."""
    if stages["install"]["status"] == "ok":
        return True
    return (stages["install"]["status"] == "replaced"
            and stages["install-fallback"]["status"] == "ok")


def test_the_gpu_check_runs_every_stage_on_the_stand_in(tmp_path):
    proc, out, result = run_check(tmp_path)
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, log
    files = {p.name for p in out.iterdir()}
    assert files <= FILES and {"results.json", "results.md", "check.log"} <= files, files
    assert result["dry_run"] is True
    stages = stages_of(result)
    assert set(STAGES) <= set(stages), (sorted(stages), log)
    for name in MUST_PASS:
        assert stages[name]["status"] == "ok", (name, stages[name], log)
    assert installed(stages), log
    order = [s["stage"] for s in result["stages"]]
    assert order.index("timing") < order.index("gpu-tests"), order  # the targets first
    assert result["tests"]["passed"] > 0 and result["tests"]["failures"] == 0, result["tests"]
    assert result["kernels"]["summary"]["failed"] == 0 and result["kernels"]["summary"]["checks"]
    cases, contenders = result["rates"]
    assert {"graph", "eager", "cpu"} <= set(contenders) and len(cases) == 3
    assert [c["sizes"] for c in cases[:2]] == [[784, 30, 10], [784, 1024, 1024, 10]]
    assert all(case.get("eager") for case in cases)
    assert [t["target"] for t in result["targets"]] and result["sanitizer"]
    plans = result["plans"]["plans"]  # the planner's table: both candidates measured
    assert plans and all(set(row["speeds"]) == {"graph", "eager"} for row in plans)
    assert all(row["choice"] in ("graph", "eager") for row in plans)
    md = (out / "results.md").read_text()
    for heading in ("## Stages", "## GPU tests", "## Raw kernels", "## Plans",
                    "## Training throughput", "## Targets", "## compute-sanitizer"):
        assert heading in md
    targets = md.split("## Targets", 1)[1].split("##", 1)[0]
    rows = [line for line in targets.splitlines() if line.startswith("| ") and "verdict" not in
            line]
    assert len(rows) == 4 and all(line.rstrip(" |*").endswith(("met", "not measured"))
                                  for line in rows), targets
    assert "Dry run" in md
    assert "== report: ok" in (out / "check.log").read_text()
    assert not list(tmp_path.glob("fastbp-gpu-check.*")), "the work folder was not removed"


# -- a fresh virtual environment: pip cannot build, the checkout on PYTHONPATH replaces it -------
DROP = ("fastbp", "__editable__", "setuptools", "pkg_resources", "_distutils_hack",
        "distutils-precedence", "wheel", "pip", "_virtualenv")


def fresh_venv(tmp_path: Path, *, setuptools: bool) -> str:
    """A new venv (pip from ensurepip, no ``wheel``; without setuptools if asked) that sees this
    environment's packages except fastbp and the build tools; its interpreter. Skips where one
    cannot be made offline in a minute."""
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=90)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"no venv with pip can be made here: {exc}")
    python = str(venv / "bin" / "python")
    if not setuptools:
        subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "setuptools"],
                       capture_output=True, timeout=60)
    ask = [python, "-c", "import importlib.util as u; print(bool(u.find_spec('setuptools')), "
           "bool(u.find_spec('wheel')))"]
    have = subprocess.run(ask, capture_output=True, text=True, timeout=60).stdout.split()
    if have[1] == "True" or (not setuptools and have[0] == "True"):
        pytest.skip(f"the fresh venv has build tools it should not (setuptools, wheel: {have})")
    farm = tmp_path / "farm"  # this environment's packages, less fastbp and the build tools
    farm.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(DROP) and entry.suffix != ".pth":
            (farm / entry.name).symlink_to(entry)
    purelib = subprocess.run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    (Path(purelib) / "fastbp_check_farm.pth").write_text(f"{farm}\n")
    return python


@pytest.mark.parametrize("setuptools", [True, False], ids=["no-wheel", "no-setuptools"])
def test_the_check_exits_0_from_a_fresh_venv_through_the_fallback(tmp_path, setuptools):
    python = fresh_venv(tmp_path, setuptools=setuptools)
    proc, out, result = run_check(tmp_path, python, FASTBP_CHECK_SKIP=SLOW,
                                  PYTHONPATH="")
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, log
    stages = stages_of(result)
    assert stages["install"]["status"] == "replaced", (stages["install"], log)
    assert stages["install-fallback"]["status"] == "ok", log
    for name in ("environment", "devices", "sanitizer-memcheck", "report"):
        assert stages.get(name, {}).get("status", "ok") == "ok", (name, log)
    assert stages["timing"]["status"] == "skipped"
    check = (out / "check.log").read_text()
    devices = check.split("== devices", 1)[1].split("== devices:", 1)[0]
    for plugin in ("cpu-jit", "cuda", "array-api"):  # every shipped plugin through the fallback
        assert plugin in devices, (plugin, devices)


# -- compute-sanitizer ---------------------------------------------------------------------------
REFUSES = """#!/bin/sh
[ "$1" = --version ] && { echo "NVIDIA (R) Compute Sanitizer"; exit 0; }
echo "========= Error: Device not supported. No instrumented API call was made."
echo "========= Target application terminated before first instrumented API call"
exit 255
"""
FINDS = """#!/bin/sh
[ "$1" = --version ] && { echo "NVIDIA (R) Compute Sanitizer"; exit 0; }
echo "========= Invalid __global__ write of size 4 bytes"
echo "========= ERROR SUMMARY: 2 errors"
exit 3
"""


@pytest.mark.parametrize("script,verdict,rc", [(REFUSES, "unavailable", 0), (FINDS, "failed", 1)],
                         ids=["refuses-the-device", "finds-errors"])
def test_a_sanitizer_that_refuses_the_device_is_unavailable_not_a_failure(tmp_path, script,
                                                                          verdict, rc):
    fake = tmp_path / "compute-sanitizer"
    fake.write_text(script)
    fake.chmod(0o755)
    proc, out, result = run_check(tmp_path, FASTBP_CHECK_SKIP=SLOW, FASTBP_SANITIZER=str(fake))
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == rc, log
    stages = stages_of(result)
    assert stages["sanitizer-memcheck"]["status"] == verdict, (stages, log)
    if verdict == "unavailable":
        assert stages["sanitizer-racecheck"]["status"] == "unavailable"
        assert "Device not supported" in stages["sanitizer-memcheck"]["note"]
        assert result["sanitizer"]["memcheck"].startswith("unavailable")
    else:
        assert "2 errors" in result["sanitizer"]["memcheck"]


# -- prepare.sh ----------------------------------------------------------------------------------
MNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_prepare_copies_mnist_into_the_ignored_folder_and_names_what_to_send(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks" / "gpu").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu" / "prepare.sh", checkout / "benchmarks" / "gpu")
    shutil.copy(ROOT / ".gitignore", checkout / ".gitignore")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True, timeout=30)
    data = tmp_path / "mnist"
    data.mkdir()
    for name in MNIST:
        (data / name).write_bytes(name.encode())
    env = {**os.environ, "FASTBP_DATA": str(data), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(checkout / "benchmarks" / "gpu" / "prepare.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in MNIST:
        assert (checkout / ".gpu-data" / name).read_bytes() == name.encode()
    assert "ignored paths: .gpu-data" in proc.stdout and "560 s" in proc.stdout
    assert "bash benchmarks/gpu/check.sh" in proc.stdout
    (data / MNIST[0]).unlink()  # no complete MNIST anywhere: exit 1, nothing claimed
    for name in MNIST:
        (checkout / ".gpu-data" / name).unlink()
    env["FASTBP_DATA"] = str(data)
    proc = subprocess.run(["bash", str(checkout / "benchmarks" / "gpu" / "prepare.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no folder with MNIST" in proc.stderr


# -- the report's targets ------------------------------------------------------------------------
def summary_module():
    import importlib.util

    path = ROOT / "benchmarks" / "gpu" / "summary.py"
    spec = importlib.util.spec_from_file_location("gpu_check_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_target_is_met_not_met_or_not_measured_and_the_crossover_is_named():
    summary = summary_module()
    rows = [{"sizes": [784, 30, 10], "batch_size": m, "contender": name, "samples_per_s": rate}
            for m, name, rate in ((10, "graph", 2_000_000), (10, "cpu", 3_000_000),
                                  (100, "eager", 9_000_000), (100, "cpu", 4_000_000),
                                  (1000, "eager", 30_000_000), (1000, "cpu", 5_000_000))]
    rows.append({"sizes": [784, 1024, 1024, 10], "batch_size": 256, "contender": "eager",
                 "samples_per_s": 500_000})
    bounds = [{"sizes": [784, 1024, 1024, 10], "batch_size": 256,
               "cublas_bound_samples_per_s": 1_000_000, "queued": True}]
    cases, _ = summary.rate_table({"rows": rows, "bounds": bounds})
    got = {t["target"].split()[0]: t for t in summary.targets(cases)}
    assert got["graphs"]["met"] is True and got["graphs"]["value"] == 2_000_000
    assert got["≥"]["met"] is None  # no JAX figure: not measured
    assert got["big"]["met"] is False and got["big"]["value"].startswith("50 %")
    assert got["the"]["met"] is True and "the GPU from m=100" in got["the"]["value"]
    assert [summary.VERDICTS[v] for v in (True, False, None)] == ["met", "**not met**",
                                                                    "not measured"]
