"""A NumPy model of the raw kernels in :mod:`fastbp_cupy.kernels`, launch by launch.

Each function reads and writes memory the way its CUDA kernel does: through the pointer it is
given (the start of an array or view) and the element strides passed beside it. Running a
:class:`~fastbp_cupy.graph.StepProgram` built on NumPy arrays through :func:`launch` checks the
captured step's arguments (pointers, strides, sizes, modes, the step counter, the order of the
launches) on a machine without a GPU; the GPU tests check the kernels themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels as K
from .graph import Launch


class Pointer:
    """The flat memory that starts where array ``a`` starts (as a raw kernel sees it)."""

    def __init__(self, a: np.ndarray) -> None:
        base = a
        while isinstance(base.base, np.ndarray):
            base = base.base
        if not base.flags.c_contiguous:
            raise ValueError("the emulator needs arrays backed by a contiguous buffer")
        offset = (a.__array_interface__["data"][0] - base.__array_interface__["data"][0])
        self.flat = base.reshape(-1)[offset // base.itemsize:]

    def __getitem__(self, idx: Any) -> Any:
        return self.flat[idx]

    def __setitem__(self, idx: Any, value: Any) -> None:
        self.flat[idx] = value


def _sigma(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def gemm(A, a0, a1, B, b0, b1, C, c0, c1, M, N, Kdim, v, v0, v1, mode, alpha, beta) -> None:
    """``fastbp_gemm_tiled`` and ``fastbp_gemm_dot`` (the same result)."""
    A, B, C, v = Pointer(A), Pointer(B), Pointer(C), Pointer(v)
    i = np.arange(int(M))[:, None]
    j = np.arange(int(N))[None, :]
    p = np.arange(int(Kdim))
    a = A[i * a0 + p[None, :] * a1]                       # (M, K)
    b = B[p[:, None] * b0 + j * b1]                       # (K, N)
    acc = a @ b
    c_idx = i * c0 + j * c1
    if mode == K.GEMM_FORWARD:
        C[c_idx] = _sigma(acc + v[i * v0 + j * v1])
    elif mode == K.GEMM_BP2:
        av = v[i * v0 + j * v1]
        C[c_idx] = acc * av * (1 - av)
    else:
        C[c_idx] = beta * C[c_idx] - alpha * acc


def gather(xs, ys, order, step, m, n_in, n_out, x_rows, y_rows) -> None:
    """``fastbp_gather``."""
    base = int(step[0]) * int(m)
    xs_p, ys_p, xr, yr = Pointer(xs), Pointer(ys), Pointer(x_rows), Pointer(y_rows)
    rows = order[base: base + int(m)]
    xr[np.arange(int(m) * int(n_in))] = xs_p[(rows[:, None] * n_in
                                             + np.arange(int(n_in))[None, :]).reshape(-1)]
    yr[np.arange(int(m) * int(n_out))] = ys_p[(rows[:, None] * n_out
                                               + np.arange(int(n_out))[None, :]).reshape(-1)]


def output_error(a, y_rows, delta, n_out, m, kind, tiny, cost) -> None:
    """``fastbp_output_error``."""
    t = np.arange(int(n_out) * int(m))
    i, j = t // m, t % m
    av = Pointer(a)[t]
    d = av - Pointer(y_rows)[j * n_out + i]
    if kind == K.COST_QUADRATIC:
        Pointer(delta)[t] = d * av * (1 - av)
        cost[0] += float(np.sum(0.5 * d.astype(np.float64) ** 2))
    else:
        Pointer(delta)[t] = d
        q = np.maximum(1 - np.abs(d), tiny)
        cost[0] -= float(np.sum(np.log(q).astype(np.float64)))


def bias_update(b, delta, n, m, alpha, step, advance) -> None:
    """``fastbp_bias_update``."""
    d = Pointer(delta)[np.arange(int(n) * int(m))].reshape(int(n), int(m))
    bp = Pointer(b)
    bp[np.arange(int(n))] = bp[np.arange(int(n))] - alpha * d.sum(axis=1)
    if advance:
        step[0] += 1


KERNELS = {"fastbp_gemm_tiled": gemm, "fastbp_gemm_dot": gemm, "fastbp_gather": gather,
           "fastbp_output_error": output_error, "fastbp_bias_update": bias_update}


def launch(item: Launch) -> None:
    """Run one launch of a :class:`~fastbp_cupy.graph.StepProgram` on NumPy arrays."""
    KERNELS[item.kernel](*item.args)
