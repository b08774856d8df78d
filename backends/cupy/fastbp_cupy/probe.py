"""Finding CuPy and the GPU for the ``cuda`` device: importing CuPy when a backend is built
(never at ``import fastbp``), counting the visible GPUs, loading cuBLAS, checking that CuPy can
compile a kernel here; every way that can fail becomes a ``DeviceError`` that keeps CuPy's or
CUDA's own message and says what to do."""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from fastbp.core.validate import env_flag
from fastbp.devices.registry import SHIPPED_PLUGINS, no_driver_reason
from fastbp.errors import DeviceError

from . import kernels as K

INSTALL = SHIPPED_PLUGINS["cuda"]  # the one install command, as fastbp devices and the README say
GRAPHS_ENV = "FASTBP_CUDA_GRAPHS"


def import_cupy() -> Any:
    """``import cupy``, or a ``DeviceError`` that says how to install it or why it broke."""
    try:
        import cupy
    except ImportError as exc:
        if exc.name == "cupy" or "No module named 'cupy'" in str(exc):
            raise DeviceError(f"device 'cuda' needs CuPy, which is not installed: {INSTALL}"
                              ) from exc
        raise DeviceError(f"CuPy is installed but cannot be imported ({exc}); reinstall the "
                          f"wheel that matches your CUDA driver: {INSTALL}") from exc
    except Exception as exc:  # noqa: BLE001 - CuPy's import can fail in many ways
        raise DeviceError(f"CuPy failed to import: {type(exc).__name__}: {exc}") from exc
    return cupy


def _visible() -> str:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if cvd is None else f" (CUDA_VISIBLE_DEVICES={cvd!r})"


def device_count(cp: Any) -> int:
    """How many GPUs CUDA shows this process; ``DeviceError`` with CUDA's message if none."""
    try:
        count = int(cp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, or a driver that will not load
        plain = no_driver_reason(str(exc))  # "insufficient driver" where there is none at all
        if plain is not None:
            raise DeviceError(plain) from exc
        raise DeviceError(
            f"device 'cuda': CuPy {getattr(cp, '__version__', '?')} finds no "
            f"usable GPU{_visible()}. CUDA says: {exc}. Check the NVIDIA driver (nvidia-smi) and "
            "that the CuPy wheel matches it (cupy-cuda12x for a CUDA 12 driver)"
        ) from exc
    if count < 1:
        raise DeviceError(f"device 'cuda': CUDA sees no GPU{_visible()}")
    return count


def cuda_libraries(cp: Any) -> Any:
    """CuPy's cuBLAS module, after checking that cuBLAS and NVRTC (which compiles the fused
    kernels) load; a ``DeviceError`` naming the missing library and how to install it if not.

    CuPy wheels take these libraries from a local CUDA toolkit or from PyPI (``[ctk]``).
    """
    try:
        cublas = getattr(cp, "cublas", None) or importlib.import_module("cupy.cublas")
        cp.cuda.nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError, or the loader's own error
        raise DeviceError(
            f"device 'cuda': CuPy {getattr(cp, '__version__', '?')} cannot load a CUDA library "
            f"it needs ({exc}). Install the CUDA toolkit, or its libraries from PyPI: "
            'pip install "cupy-cuda12x[ctk]" (what "./backends/cupy[cuda12]" installs)'
        ) from exc
    return cublas


HEADERS_HINT = ("CuPy compiles its kernels with NVRTC and needs the CUDA headers for that: "
                'pip install "cupy-cuda12x[ctk]" (or "cupy-cuda13x[ctk]"; what '
                '"./backends/cupy[cuda12]" installs), or install the CUDA toolkit and set '
                "CUDA_PATH to it")


def compile_probe(cp: Any, device: Any) -> None:
    """Compile and run one trivial ``ElementwiseKernel`` on ``device``, the way every fused
    kernel of this backend is built; a ``DeviceError`` naming the cause if that fails.

    CuPy compiles kernels when they are first called, and each needs the CUDA headers: without
    them (``cupy-cuda12x`` without ``[ctk]`` and no toolkit) the first training step would die
    with a bare ``RuntimeError``. Here the failure is found when the backend is built.
    """
    try:
        with device:
            x = cp.zeros((1,), dtype=np.float32)
            y = cp.empty((1,), dtype=np.float32)
            K.elementwise(cp, "probe")(x, y)
            value = float(cp.asnumpy(y)[0])
    except Exception as exc:  # noqa: BLE001 - NVRTC, header and driver errors alike
        msg = f"{type(exc).__name__}: {exc}"
        headers = any(s in msg for s in ("CUDA headers", "cuda_fp16.h", "cuda_runtime.h",
                                         "cannot open source file", "CUDA_PATH"))
        what = ("cannot find the CUDA headers it needs to compile kernels" if headers
                else "cannot compile or run a kernel")
        raise DeviceError(
            f"device 'cuda:{getattr(device, 'id', '?')}': CuPy {getattr(cp, '__version__', '?')} "
            f"{what} ({msg}). {HEADERS_HINT}"
        ) from exc
    if value != 1.0:
        raise DeviceError(
            f"device 'cuda:{getattr(device, 'id', '?')}': a trivial kernel computed 0 + 1 = "
            f"{value}; this GPU or its driver does not run CuPy's kernels correctly"
        )


def cuda_version(v: int) -> str:
    """CUDA's integer version ``12090`` as ``12.9``."""
    v = int(v)
    return "none" if v == 0 else f"{v // 1000}.{(v % 1000) // 10}"


def graphs_from_env() -> bool:
    """``$FASTBP_CUDA_GRAPHS``: ``0``/``false``/``off``/``no`` turn graph capture off; a value
    that is no yes or no is a ``ConfigError`` naming the variable."""
    return env_flag(GRAPHS_ENV, True)
