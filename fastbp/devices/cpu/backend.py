"""``NumpyBackend``: the built-in ``cpu`` device, NumPy with its BLAS for the products, and its
own epoch loop (:mod:`fastbp.devices.cpu.epoch`) where that applies."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import Array, Backend
from . import cblas, epoch
from .blas_threads import one_thread
from .conv import NumpyConvOps

if TYPE_CHECKING:
    from ...core.ops import Scalar
    from ...core.plan import EpochPlan


_BLOCK = 1024  # columns per block of a skinny long product (matmul_nt)


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

    def sum_columns(self, a: Array, out: Array) -> Array:
        """``out = Σ_j a[:, j]`` as a column ``(n, 1)``: ``numpy.sum``'s reduction called without
        its Python wrapper (the same pairwise sums)."""
        return np.add.reduce(a, axis=1, keepdims=True, out=out)

    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a b``; a short sum over many columns (``a`` under 64 columns, ``b`` at least
        2048: the first convolution's ``W_f · cols``) in blocks of 1024 columns of ``b``, which
        OpenBLAS runs ~20 % faster (one thread, SkylakeX). Each entry is the same sum."""
        k, n = int(b.shape[0]), int(b.shape[-1])
        if k >= 64 or n < 2 * _BLOCK or b.ndim != 2 or out.ndim != 2:
            return np.matmul(a, b, out=out)
        for s in range(0, n, _BLOCK):
            np.matmul(a, b[:, s : s + _BLOCK], out=out[:, s : s + _BLOCK])
        return out

    def matmul_nt(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a bᵀ`` for ``a`` ``(F, N)``, ``b`` ``(K, N)``. A long sum (``N ≥ 512`` and
        ``N > K``, a convolution's ``∂C/∂W_f = δ^z colsᵀ`` over every position of every sample)
        runs in the form OpenBLAS does faster (one thread, SkylakeX: ~25 % on the chapter-6
        net's products): ``(b aᵀ)ᵀ``, or with ``F`` and ``K`` both under 64 (an output too small
        to keep the kernel busy) as ``Σ_k a_k b_kᵀ`` over blocks of 1024 columns. Only the
        summation order differs."""
        n, k, f = int(a.shape[1]), int(b.shape[0]), int(a.shape[0])
        if n < 512 or n <= k or a.dtype != b.dtype or a.dtype != out.dtype:
            return np.matmul(a, b.T, out=out)
        if f < 64 and k < 64:
            np.matmul(a[:, :_BLOCK], b[:, :_BLOCK].T, out=out)
            part = self._scratch("nt-block", (f, k), out.dtype)
            for s in range(_BLOCK, n, _BLOCK):
                np.matmul(a[:, s : s + _BLOCK], b[:, s : s + _BLOCK].T, out=part)
                np.add(out, part, out=out)
            return out
        turned = self._scratch("nt-turned", (k, f), out.dtype)
        np.matmul(b, a.T, out=turned)
        np.copyto(out, turned.T)
        return out

    def sgd_epoch(self, plan: EpochPlan) -> Scalar | None:
        """One epoch: the loop of :mod:`fastbp.devices.cpu.epoch` (BLAS called directly, the SGD
        or velocity update folded into the weight-gradient GEMM; momentum, L1 and dropout
        included) where it applies, else ``None`` (the generic loop runs)."""
        if epoch.applies(plan):
            return epoch.sgd_epoch(self, plan)
        return None

    def between_epochs(self, plan: EpochPlan) -> contextlib.AbstractContextManager[None]:
        """BLAS on one thread between epochs that run it on one (this device's loop for a small
        step or a narrow network): an idle BLAS thread of a threaded evaluation spins for a
        while after it, on the core the next epoch needs (the book's run: 25 % slower epochs)."""
        if epoch.applies(plan) and not epoch.epoch_threads(plan):
            return one_thread()
        return contextlib.nullcontext()

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


