"""Helpers of ``benchmarks/gpu/check.sh``, one subcommand each:

- ``env OUT.json``: the machine (GPU from ``nvidia-smi``, CPU, Python, the versions of the
  packages that matter, the environment variables that change results);
- ``site DIR``: when ``pip install -e`` cannot build (an offline image without ``wheel``), the
  metadata that makes this checkout importable from ``PYTHONPATH`` with its entry points
  (``DIR/<name>.dist-info``), for each of fastbp and fastbp-cupy not installed already;
- ``headers FILE``: when building a ``cuda`` backend fails for want of the CUDA headers (CuPy
  compiles its kernels with them), a folder with ``include/cuda_fp16.h`` found on this machine
  (a CUDA toolkit, or the ``nvidia`` packages other libraries installed) written to ``FILE``, for
  ``CUDA_PATH``;
- ``plans OUT.json [--quick]``: ``fastbp tune --device cuda`` for the book's configurations
  ([784,30,10] and [784,100,10] at batches 10 and 100, [784,1024,1024,10] at 256; ``--quick``:
  a small network on few samples), then ``fastbp devices`` with the plans in force, and the
  planner's table (every candidate's samples/s, the choice, the estimate it had to beat) in
  ``OUT.json``;
- ``write WORK OUT [--dry-run]``: the stages' records and results in ``WORK`` as
  ``OUT/results.json`` and ``OUT/results.md``, with the issue's targets checked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("numpy", "scipy", "cupy", "cupy-cuda13x", "cupy-cuda12x", "numba", "threadpoolctl",
            "pytest", "pytest-benchmark", "hypothesis", "jax", "jaxlib", "torch", "fastbp",
            "fastbp-cupy")
ENV_VARS = ("CUDA_VISIBLE_DEVICES", "CUDA_PATH", "CUPY_TF32", "NVIDIA_TF32_OVERRIDE",
            "CUPY_ACCELERATORS", "FASTBP_CUDA_GRAPHS", "FASTBP_PLAN", "FASTBP_CACHE",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
            "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_DEFAULT_MATMUL_PRECISION")
TARGET_GRAPH_M10 = 1_000_000
TARGET_VS_JAX = 1.2
TARGET_VS_CUBLAS = 0.7
MARGIN_PERCENT = 10  # fastbp.devices.planner.MARGIN


# -- env ----------------------------------------------------------------------------------------
def run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"({type(exc).__name__}: {exc})"


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
               "--format=csv,noheader"])
    if gpu.startswith("(FileNotFoundError"):
        gpu = "(no nvidia-smi here)"
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "gpu": gpu or "(nvidia-smi gave nothing)",
            "packages": versions,
            "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


# -- site ---------------------------------------------------------------------------------------
def write_site(directory: Path) -> list[str]:
    """Metadata for this checkout's distributions that are not installed; their names."""
    from importlib import metadata

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = None
    made = []
    for project_dir in (ROOT, ROOT / "backends" / "cupy"):
        text = (project_dir / "pyproject.toml").read_text()
        if tomllib is not None:
            project = tomllib.loads(text)["project"]
        else:
            project = {"name": re.search(r'^name = "([^"]+)"', text, re.M).group(1),
                       "version": re.search(r'^version = "([^"]+)"', text, re.M).group(1)}
        name, version = project["name"], project["version"]
        try:
            metadata.distribution(name)
            continue  # installed already
        except metadata.PackageNotFoundError:
            pass
        info = directory / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {version}\n")
        groups = project.get("entry-points", {})
        lines = []
        scripts = project.get("scripts", {})
        if scripts:
            lines.append("[console_scripts]")
            lines += [f"{k} = {v}" for k, v in scripts.items()]
        for group, entries in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        made.append(name)
    return made


# -- headers ------------------------------------------------------------------------------------
def header_folders() -> list[Path]:
    """Folders ``X`` with ``X/include/cuda_fp16.h``: CUDA toolkits, then pip's nvidia packages."""
    import glob
    import site

    found = [Path(p).parent.parent for p in sorted(glob.glob("/usr/local/cuda*/include/"
                                                                "cuda_fp16.h"))]
    bases = [*site.getsitepackages(), site.getusersitepackages()]
    for base in bases:
        for p in sorted(glob.glob(os.path.join(base, "nvidia", "**", "include", "cuda_fp16.h"),
                              recursive=True)):
            found.append(Path(p).parent.parent)
    return found


def find_headers(out: Path) -> int:
    try:
        from fastbp_cupy import CuPyBackend

        CuPyBackend()
        print("a cuda backend builds: CuPy finds what it compiles with")
        return 0
    except Exception as exc:  # noqa: BLE001
        print(f"building a cuda backend: {type(exc).__name__}: {exc}")
        if "header" not in str(exc).lower():
            return 0
    folders = header_folders()
    print("folders with include/cuda_fp16.h: " + (", ".join(map(str, folders)) or "none"))
    if folders:
        out.write_text(str(folders[0]))
        print(f"CUDA_PATH={folders[0]} for the stages that follow")
    return 0


# -- plans --------------------------------------------------------------------------------------
# The book's configurations: (layer sizes, batch sizes).
PLAN_CONFIGS = (("784,30,10", ("10", "100")), ("784,100,10", ("10", "100")),
                ("784,1024,1024,10", ("256",)))
QUICK_CONFIGS = (("20,8,4", ("4", "8")),)


def plans(out: Path, quick: bool) -> int:
    """``fastbp tune --device cuda`` on each configuration (measured, whatever the cache
    holds), ``fastbp devices`` with the plans in force, the table in ``out``."""
    from fastbp.cli import main as fastbp_main
    from fastbp.devices import planner

    samples = "64" if quick else "20000"  # the long trial takes 16,384 rows
    rc = 0
    for sizes, batches in QUICK_CONFIGS if quick else PLAN_CONFIGS:
        argv = ["tune", "--device", "cuda", "--sizes", sizes, "--batch-sizes", *batches,
                "--samples", samples]
        print("$ fastbp " + " ".join(argv), flush=True)
        try:
            rc |= fastbp_main(argv)
        except Exception as exc:  # noqa: BLE001 - the next configuration still runs
            print(f"fastbp tune failed: {type(exc).__name__}: {exc}", flush=True)
            rc = 1
    os.environ[planner.ENV_VAR] = "auto"  # the cached plans, as training reads them
    print("$ FASTBP_PLAN=auto fastbp devices", flush=True)
    fastbp_main(["devices"])
    try:
        doc = planner.load_cache(planner.cache_path())
    except (OSError, ValueError) as exc:
        print(f"no plan cache to report: {exc}")
        doc = {}
    section = (doc.get("sections") or {}).get("cuda") or {}
    table = []
    for key, entry in sorted((section.get("plans") or {}).items()):
        sizes_part, batch = key.split(" ")[1], key.split(" ")[2]
        layers = [int(v) for v in sizes_part.strip("[]").split(",")]
        m = int(batch.removeprefix("m="))
        table.append({"configuration": key, "choice": entry.get("choice"),
                      "estimate": estimate(layers, m), "speeds": entry.get("speeds", {}),
                      "measured_s": entry.get("measured_s")})
    result = {"fingerprint": section.get("fingerprint"), "plans": table}
    out.write_text(json.dumps(result, indent=2, default=str))
    return rc


def estimate(sizes: list[int], m: int) -> str:
    """What the backend's estimates choose (``FASTBP_PLAN=off``) for ``sizes`` at batch ``m``."""
    from fastbp_cupy import CuPyBackend

    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    small = m <= CuPyBackend.graph_max_batch and weights <= CuPyBackend.graph_max_weights
    return "graph" if small else "eager"


# -- write --------------------------------------------------------------------------------------
def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_stages(work: Path) -> list[dict[str, Any]]:
    stages = []
    try:
        lines = (work / "stages.tsv").read_text().splitlines()
    except OSError:
        return stages
    for line in lines:
        parts = line.split("\t")
        parts += [""] * (5 - len(parts))
        name, status, rc, seconds, note = parts[:5]
        stages.append({"stage": name, "status": status, "rc": rc, "seconds": seconds,
                       "note": note})
    return stages


def read_junit(path: Path) -> dict[str, Any] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed, skipped = [], []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            for tag in ("failure", "error"):
                el = case.find(tag)
                if el is not None:
                    failed.append({"test": name, "message": (el.get("message") or "")[:300]})
            el = case.find("skipped")
            if el is not None:
                skipped.append({"test": name, "reason": (el.get("message") or "")[:200]})
    counts["passed"] = (counts["tests"] - counts["failures"] - counts["errors"]
                        - counts["skipped"])
    return {**counts, "failed": failed, "skipped_tests": skipped}


def sanitizer_verdicts(log: Path, stages: list[dict[str, Any]]) -> dict[str, str]:
    """What each compute-sanitizer tool said, from its section of the log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    verdicts = {}
    for tool in ("memcheck", "racecheck"):
        stage = next((s for s in stages if s["stage"] == f"sanitizer-{tool}"), None)
        part = text.split(f"== sanitizer-{tool}:", 1)
        part = part[1].split("== sanitizer-", 1)[0] if len(part) > 1 else ""
        found = re.findall(r"ERROR SUMMARY: (\d+) error", part)
        hazards = re.findall(r"RACECHECK SUMMARY: (\d+) hazard", part)
        if stage is None:
            verdicts[tool] = "not run"
        elif stage["status"] == "skipped":
            verdicts[tool] = f"not run: {stage['note']}"
        elif found or hazards:
            n = sum(int(x) for x in found + hazards)
            verdicts[tool] = "clean (0 errors)" if n == 0 else f"{n} errors/hazards, see log"
        elif stage["status"] == "ok":
            verdicts[tool] = "ran without a summary line"
        else:
            verdicts[tool] = (f"did not run here ({stage['status']}, rc {stage['rc']}): "
                              "compute-sanitizer works only on some machines; see "
                              "sanitizer.log")
    return verdicts


def rate_table(timing: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per case: each contender's samples/s, fastbp's default path against JAX, and
    the cuBLAS bound."""
    cases: dict[tuple, dict[str, Any]] = {}
    contenders: list[str] = []
    for row in timing.get("rows", []):
        key = (tuple(row["sizes"]), row["batch_size"])
        case = cases.setdefault(key, {"sizes": list(key[0]), "batch_size": key[1]})
        name = row["contender"]
        if name == "*":
            case["note"] = row.get("skipped", "")
            continue
        if name not in contenders:
            contenders.append(name)
        case[name] = row.get("samples_per_s")
        if row.get("error"):
            case.setdefault("errors", []).append(f"{name}: {row['error']}")
    for bound in timing.get("bounds", []):
        key = (tuple(bound["sizes"]), bound["batch_size"])
        if key in cases:
            cases[key]["cublas_bound"] = bound.get("cublas_bound_samples_per_s")
            cases[key]["sgemm_peak_gflops"] = bound.get("sgemm_peak_gflops")
    for case in cases.values():
        fastbp = [case.get(k) for k in ("graph", "eager") if case.get(k)]
        case["fastbp_gpu"] = max(fastbp) if fastbp else None
        if case["fastbp_gpu"] and case.get("jax-scan"):
            case["vs_jax_scan"] = case["fastbp_gpu"] / case["jax-scan"]
        if case["fastbp_gpu"] and case.get("cublas_bound"):
            case["vs_cublas"] = case["fastbp_gpu"] / case["cublas_bound"]
    return list(cases.values()), contenders


def targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    m10 = next((c for c in cases if c["sizes"] == [784, 30, 10] and c["batch_size"] == 10), None)
    value = m10.get("graph") if m10 else None
    out.append({"target": "graphs at m=10 on [784,30,10] ≥ 1,000,000 samples/s",
                "value": value, "met": None if value is None else value >= TARGET_GRAPH_M10})
    ratios = [c for c in cases if c.get("vs_jax_scan") is not None]
    worst = min(ratios, key=lambda c: c["vs_jax_scan"]) if ratios else None
    out.append({"target": "≥ 1.2× JAX lax.scan on the same GPU at every batch",
                "value": None if worst is None else
                f"{worst['vs_jax_scan']:.2f}× at {worst['sizes']} m={worst['batch_size']} "
                f"(worst of {len(ratios)})",
                "met": None if worst is None else all(c["vs_jax_scan"] >= TARGET_VS_JAX
                                                      for c in ratios)})
    big = [c for c in cases if c.get("vs_cublas") is not None]
    worst = min(big, key=lambda c: c["vs_cublas"]) if big else None
    out.append({"target": "big networks ≥ 70 % of the cuBLAS rate measured here",
                "value": None if worst is None else
                f"{100 * worst['vs_cublas']:.0f} % at {worst['sizes']} m={worst['batch_size']}",
                "met": None if worst is None else all(c["vs_cublas"] >= TARGET_VS_CUBLAS
                                                      for c in big)})
    return out


def fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and x < 100:
        return f"{x:.2f}"
    return f"{int(x):,}"


def markdown(result: dict[str, Any]) -> str:
    env = result.get("machine") or {}
    lines = [f"# fastbp GPU check, {result['finished']}", ""]
    if result["dry_run"]:
        lines += ["**Dry run** on the NumPy stand-in for CuPy, without a GPU: it checks that "
                  "every stage runs; no figure below is a measurement.", ""]
    device = (result.get("timing") or {}).get("device") or {}
    lines += [f"- GPU: {env.get('gpu', '?')}",
              f"- CuPy {device.get('cupy', env.get('packages', {}).get('cupy', '?'))}, CUDA "
              f"runtime {device.get('cuda_runtime', '?')}, driver {device.get('cuda_driver', '?')}"
              f", compute capability {device.get('compute_capability', '?')}",
              f"- CPU: {env.get('cpu', '?')} ({env.get('cores', '?')} cores), Python "
              f"{env.get('python', '?')}",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in
                                          (env.get('packages') or {}).items()), ""]
    lines += ["## Stages", "", "| stage | status | seconds | note |", "|---|---|---:|---|"]
    for s in result["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['note']} |")
    tests = result.get("tests")
    lines += ["", "## GPU tests (tests.log)", ""]
    if tests:
        lines.append(f"{tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
                     f"{tests['skipped']} skipped.")
        for f in tests["failed"]:
            lines.append(f"- FAILED `{f['test']}`: {f['message']}")
    else:
        lines.append("No test report (see tests.log).")
    kernels = result.get("kernels")
    lines += ["", "## Raw kernels against NumPy float64 (kernels.log)", ""]
    if kernels:
        s = kernels["summary"]
        lines += [f"{s['checks'] - s['failed']} of {s['checks']} checks pass "
                  "(worst: the largest |error| / (2 × rounding bound); ≤ 1 passes).", "",
                  "| kernel | checks | failed | worst |", "|---|---:|---:|---:|"]
        for name, k in s["by_kernel"].items():
            lines.append(f"| {name} | {k['checks']} | {k['failed']} | {k['worst']:.3g} |")
        for f in kernels.get("failed", [])[:20]:
            lines.append(f"- FAILED {f['kernel']} {f['dtype']} {f['case']}: {f['note']}")
    else:
        lines.append("No kernel report (see kernels.log).")
    cases, contenders = result.get("rates") or ([], [])
    timing = result.get("timing") or {}
    lines += ["", "## Training throughput, samples/s (timing.log)", ""]
    if cases:
        lines += [f"{timing.get('n', '?'):,} samples per epoch ({timing.get('data', '?')}), "
                  f"float32, best of {timing.get('repeat', '?')} epochs after a warm-up, a "
                  "device synchronize inside each timed epoch.", ""]
        head = ["network", "batch", *contenders, "fastbp / jax-scan", "cuBLAS bound"]
        lines += ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
        for c in cases:
            cells = [str(c["sizes"]), str(c["batch_size"]), *(fmt(c.get(k)) for k in contenders),
                     fmt(c.get("vs_jax_scan")), fmt(c.get("cublas_bound"))]
            lines.append("| " + " | ".join(cells) + " |")
        for c in cases:
            for e in c.get("errors", []):
                lines.append(f"- {c['sizes']} m={c['batch_size']}: {e}")
    else:
        lines.append("No timing results (see timing.log).")
    lines += ["", "## Plans: graph or eager, measured (fastbp tune --device cuda)", ""]
    table = (result.get("plans") or {}).get("plans") or []
    if table:
        lines += ["The planner's trials, samples/s; a candidate replaces the estimate "
                  f"(`FASTBP_PLAN=off`) only when {MARGIN_PERCENT} % faster.", "",
                  "| configuration | chosen | estimate | graph | eager | measured in s |",
                  "|---|---|---|---:|---:|---:|"]
        for row in table:
            speeds = row["speeds"]
            lines.append(f"| {row['configuration']} | {row['choice']} | {row['estimate']} | "
                         f"{fmt(speeds.get('graph'))} | {fmt(speeds.get('eager'))} | "
                         f"{fmt(row.get('measured_s'))} |")
    else:
        lines.append("No plans measured (see check.log, stage plans).")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in result.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '–'} | "
                     f"{met} |")
    lines += ["", "## compute-sanitizer (sanitizer.log)", ""]
    for tool, verdict in (result.get("sanitizer") or {}).items():
        lines.append(f"- {tool}: {verdict}")
    return "\n".join(lines) + "\n"


def write(work: Path, out: Path, dry_run: bool) -> int:
    stages = read_stages(work)
    timing = load_json(work / "timing.json")
    rates = rate_table(timing) if timing else ([], [])
    result = {
        "dry_run": dry_run,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": load_json(work / "env.json"),
        "stages": stages,
        "tests": read_junit(work / "junit.xml"),
        "kernels": load_json(work / "kernels.json"),
        "timing": timing,
        "plans": load_json(work / "plans.json"),
        "rates": rates,
        "targets": targets(rates[0]),
        "sanitizer": sanitizer_verdicts(out / "sanitizer.log", stages),
    }
    if result["kernels"]:
        result["kernels"].pop("rows", None)  # the failed ones are kept; all are in kernels.log
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="helpers of benchmarks/gpu/check.sh")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env")
    e.add_argument("out")
    s = sub.add_parser("site")
    s.add_argument("directory")
    h = sub.add_parser("headers")
    h.add_argument("file")
    pl = sub.add_parser("plans")
    pl.add_argument("out")
    pl.add_argument("--quick", action="store_true", help="a small network on few samples")
    w = sub.add_parser("write")
    w.add_argument("work")
    w.add_argument("out")
    w.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    if args.command == "env":
        info = environment()
        Path(args.out).write_text(json.dumps(info, indent=2, default=str))
        for k, v in info.items():
            print(f"{k}: {v}")
        return 0
    if args.command == "site":
        made = write_site(Path(args.directory))
        print("metadata written for: " + (", ".join(made) or "nothing (all installed)"))
        return 0
    if args.command == "headers":
        return find_headers(Path(args.file))
    if args.command == "plans":
        return plans(Path(args.out), args.quick)
    return write(Path(args.work), Path(args.out), args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
