"""``NumpyBackend``: the built-in ``cpu`` device, NumPy with its BLAS for the products, and its
own epoch loop (:mod:`fastbp.devices.cpu.epoch`) where that applies."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import Array, Backend
from . import cblas, epoch
from .conv import NumpyConvOps

if TYPE_CHECKING:
    from ...core.ops import Scalar
    from ...core.plan import EpochPlan


class NumpyBackend(NumpyConvOps, Backend):
    """The ``cpu`` device: NumPy, with its BLAS for the products."""

    name = "cpu"
    kind = "cpu"
    host_arrays = True

    def __init__(self, dtype: str = "float32", index: int = 0) -> None:
        super().__init__(np, dtype=dtype, index=index)

    def sigmoid(self, z: Array, out: Array) -> Array:
        """``out = σ(z) = 1 / (1 + e^{-z})``: the ``cpu`` device's one σ,
        :func:`fastbp.devices.cpu.epoch.sigmoid`, which its own epoch runs too."""
        if out is not z:
            np.copyto(out, z)
        epoch.sigmoid(out)
        return out

    def sgd_epoch(self, plan: EpochPlan) -> Scalar | None:
        """One epoch: the loop of :mod:`fastbp.devices.cpu.epoch` (BLAS called directly, the SGD
        or velocity update folded into the weight-gradient GEMM; momentum, L1 and dropout
        included) where it applies, else ``None`` (the generic loop runs)."""
        if epoch.applies(plan):
            return epoch.sgd_epoch(self, plan)
        return None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(model=cpu_model(), cores=os.cpu_count(), numpy=np.__version__)
        info["blas"] = blas_description()
        info["gemm"] = cblas.description()  # what training's GEMMs call (fastbp.devices.cpu.cblas)
        return info


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description() -> str:
    """The BLAS NumPy calls, with its thread count where threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        # NumPy's own BLAS first (SciPy may load another one into the same process).
        libs.sort(key=lambda i: "numpy" not in str(i.get("filepath", "")))
        if libs:
            i = libs[0]
            return f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
    except ImportError:
        pass
    cfg = getattr(np, "show_config", None)
    try:
        info = cfg(mode="dicts")  # type: ignore[misc]
        blas = info["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - older NumPy has no dict mode
        return "unknown"


