"""``benchmarks/gpu/check.sh --dry-run``: the GPU check runs every stage on the CPU stand-in.

A GPU machine reaches this project for minutes at a time; the script that uses it must not die
of a typo, a missing import or a wrong path. The dry run runs each stage against the NumPy
stand-in for CuPy, with small sizes, and must produce the JSON and Markdown reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "gpu" / "check.sh"
STAGES = ("environment", "install", "devices", "plans", "gpu-tests", "kernels", "timing",
          "sanitizer-memcheck", "sanitizer-racecheck")
MUST_PASS = ("environment", "devices", "plans", "gpu-tests", "kernels", "timing",
             "sanitizer-memcheck")
FILES = {"check.log", "tests.log", "kernels.log", "timing.log", "sanitizer.log", "results.json",
         "results.md"}

pytestmark = [
    pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/gpu is not in this checkout"),
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                       reason="needs bash and timeout"),
]


def test_the_gpu_check_runs_every_stage_on_the_stand_in(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FASTBP_DEVICE", "FASTBP_CUDA", "CUDA_VISIBLE"))}
    env.update(PYTHON=sys.executable, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    files = {p.name for p in out.iterdir()}
    assert files <= FILES and {"results.json", "results.md", "check.log"} <= files, files
    result = json.loads((out / "results.json").read_text())
    assert result["dry_run"] is True
    stages = {s["stage"]: s for s in result["stages"]}
    assert set(STAGES) <= set(stages), (sorted(stages), log)
    for name in MUST_PASS:
        assert stages[name]["status"] == "ok", (name, stages[name], log)
    install = stages["install"]["status"] == "ok" or stages.get(
        "install-fallback", {}).get("status") == "ok"
    assert install, log
    assert result["tests"]["passed"] > 0 and result["tests"]["failures"] == 0, result["tests"]
    assert result["kernels"]["summary"]["failed"] == 0 and result["kernels"]["summary"]["checks"]
    cases, contenders = result["rates"]
    assert {"graph", "eager", "cpu"} <= set(contenders) and len(cases) == 3
    assert all(case.get("eager") for case in cases)
    assert [t["target"] for t in result["targets"]] and result["sanitizer"]
    plans = result["plans"]["plans"]  # the planner's table: both candidates measured
    assert plans and all(set(row["speeds"]) == {"graph", "eager"} for row in plans)
    assert all(row["choice"] in ("graph", "eager") for row in plans)
    md = (out / "results.md").read_text()
    for heading in ("## Stages", "## GPU tests", "## Raw kernels", "## Plans",
                    "## Training throughput", "## Targets", "## compute-sanitizer"):
        assert heading in md
    assert "Dry run" in md
    assert "== report: ok" in (out / "check.log").read_text()
    assert not list(tmp_path.glob("fastbp-gpu-check.*")), "the work folder was not removed"
