"""Helpers of ``benchmarks/gpu/check.sh``, one subcommand each:

- ``env OUT.json``: the machine (GPU from ``nvidia-smi``, CPU, Python, the versions of the
  packages that matter, the environment variables that change results);
- ``site DIR``: when ``pip install -e`` cannot build (an offline image without ``wheel`` or
  setuptools), the metadata that makes this checkout importable from ``PYTHONPATH`` with its
  entry points (``DIR/<name>.dist-info``), for each of its distributions (fastbp, which ships
  ``cpu-jit`` from ``backends/numba``, and every ``backends/*/pyproject.toml``) not installed
  already;
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
  ``OUT/results.json`` and ``OUT/results.md``, with the issue's targets checked
  (:mod:`summary`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
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
def project_dirs() -> list[Path]:
    """This checkout's distributions: fastbp (with ``backends/numba``) and every plugin under
    ``backends/`` that has its own ``pyproject.toml``."""
    return [ROOT, *sorted(p.parent for p in (ROOT / "backends").glob("*/pyproject.toml"))]


def write_site(directory: Path) -> list[str]:
    """Metadata for this checkout's distributions that are not installed; their names."""
    from importlib import metadata

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = None
    made = []
    for project_dir in project_dirs():
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
    from summary import write

    return write(Path(args.work), Path(args.out), args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
