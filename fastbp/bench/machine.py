"""A description of the machine a benchmark ran on: CPU, BLAS and its threads, GPUs, versions.

Figures are only comparable on the same machine; this is what the saved results carry so a reader
can tell (and so ``fastbp bench --compare`` can warn when two runs come from different machines).
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Iterable

from ..devices.cpu.backend import cpu_model

# Distributions whose versions matter to the figures (reported only where installed).
PACKAGES = ("fastbp", "fastbp-cupy", "fastbp-numba", "fastbp-array-api", "numpy", "scipy",
            "numba", "cupy-cuda12x", "cupy-cuda13x", "torch", "jax", "jaxlib",
            "pytest-benchmark", "threadpoolctl", "matplotlib")
# Environment variables that change which kernel or how many threads run.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_CORETYPE", "NUMBA_NUM_THREADS", "FASTBP_DEVICE", "CUDA_VISIBLE_DEVICES",
               "XLA_FLAGS")


def cpu_flags() -> list[str]:
    """The vector extensions the CPU offers (AVX, AVX2, AVX-512, FMA), from ``/proc/cpuinfo``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_info() -> list[dict[str, Any]]:
    """Every BLAS and OpenMP pool loaded in this process (threadpoolctl), with its threads.

    NumPy and SciPy are imported first so their BLAS shows; empty without threadpoolctl.
    """
    import numpy  # noqa: F401 - loads NumPy's BLAS

    try:
        import scipy.linalg  # noqa: F401 - loads SciPy's BLAS
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # NumPy's build information at least names the library
        from ..devices.cpu.backend import blas_description

        return [{"user_api": "blas", "internal_api": blas_description(), "shipped_by": "numpy",
                 "num_threads": "? (threadpoolctl not installed)"}]
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture",
            "threading_layer", "prefix")
    out = []
    for info in threadpool_info():
        entry = {k: info.get(k) for k in keep if info.get(k) is not None}
        # .../site-packages/numpy.libs/libscipy_openblas64_...so → shipped by numpy
        parts = os.path.dirname(info.get("filepath", "")).split(os.sep)
        owner = parts[-2] if len(parts) > 1 and parts[-1] == "lib" else parts[-1]
        entry["shipped_by"] = owner.removesuffix(".libs") or "system"
        out.append(entry)
    return out


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the figures, and Python's."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (how busy the machine was), where the OS tells."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_devices(names: Iterable[str] | None = None) -> dict[str, Any]:
    """``backend.describe()`` for each device that starts here, or why it does not."""
    from .. import devices

    out: dict[str, Any] = {}
    for name in names if names is not None else devices.backend_names():
        try:
            out[name] = devices.resolve(name, "float32").describe()
        except Exception as exc:  # noqa: BLE001 - a missing GPU is a fact to record, not a crash
            out[name] = {"unavailable": str(exc)}
    return out


def describe_machine(device_names: Iterable[str] | None = None) -> dict[str, Any]:
    """Everything above as one JSON-ready dict."""
    return {
        "datetime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "cpu": {"model": cpu_model(), "machine": platform.machine(),
                "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
                "vector_extensions": cpu_flags()},
        "load_average": load_average(),
        "threads_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "blas": blas_info(),
        "devices": describe_devices(device_names),
        "versions": versions(),
    }
