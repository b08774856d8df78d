"""A NumPy model of the raw kernels in :mod:`fastbp_cupy.kernels`, launch by launch.

Each function reads and writes memory the way its CUDA kernel does: through the pointer it is
given (the start of an array or view) and the element strides passed beside it. The tiled GEMM
is modelled thread by thread (vectorised over the grid): which element each thread of each block
loads into the shared tiles, by the same index arithmetic and ``layout`` bits as the CUDA source,
so a wrong mapping gives a wrong product here too. Running a
:class:`~fastbp_cupy.graph.StepProgram` built on NumPy arrays through :func:`launch` checks the
step's arguments (pointers, strides, sizes, modes, layouts, the step counter, the order of the
launches) on a machine without a GPU; the GPU checks test the kernels themselves.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import kernels as K
from .launches import Launch


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


def _epilogue(acc, C, c_idx, v, v_idx, mode, alpha, beta) -> None:  # noqa: ANN001
    mode = int(mode)
    if mode == K.GEMM_FORWARD:
        C[c_idx] = _sigma(acc + v[v_idx])
    elif mode == K.GEMM_BP2:
        av = v[v_idx]
        C[c_idx] = acc * av * (1 - av)
    elif mode == K.GEMM_SGD:  # β = 0 never reads C
        C[c_idx] = -alpha * acc if beta == 0 else beta * C[c_idx] - alpha * acc
    elif mode == K.GEMM_FORWARD_TANH:
        C[c_idx] = np.tanh(acc + v[v_idx])
    elif mode == K.GEMM_FORWARD_RELU:
        z = acc + v[v_idx]
        C[c_idx] = np.where(z > 0, z, 0)
    elif mode == K.GEMM_FORWARD_LINEAR:
        C[c_idx] = acc + v[v_idx]
    elif mode == K.GEMM_BP2_TANH:
        av = v[v_idx]
        C[c_idx] = acc * (1 - av * av)
    elif mode == K.GEMM_BP2_FACTOR:
        C[c_idx] = acc * v[v_idx]
    else:
        assert mode == K.GEMM_BP2_RELU, mode
        C[c_idx] = np.where(v[v_idx] > 0, acc, 0)


def _threads(blocks: int, tile: int = K.TILE) -> tuple[np.ndarray, np.ndarray]:
    """``threadIdx.y`` and ``threadIdx.x`` broadcast over ``(block, ty, tx)``."""
    ty = np.broadcast_to(np.arange(tile)[None, :, None], (blocks, tile, tile))
    tx = np.broadcast_to(np.arange(tile)[None, None, :], (blocks, tile, tile))
    return ty, tx


def a_tile_loads(a_rows: bool, row0: np.ndarray, p0: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A's tile load of the tiled kernel: thread ``(ty, tx)`` of each block writes
    ``As[r][q] = A[i, p]``; returns ``(r, q, i, p)`` indexed ``[block, ty, tx]``. ``row0`` is
    each block's first row (``blockIdx.y · TILE``); with ``a_rows``, ``tx`` walks the rows."""
    ty, tx = _threads(row0.shape[0])
    r, q = (tx, ty) if a_rows else (ty, tx)
    return r, q, row0[:, None, None] + r, p0 + q


def b_tile_loads(b_rows: bool, col0: np.ndarray, p0: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """B's tile load: thread ``(ty, tx)`` writes ``Bs[q][c] = B[p, j]``; returns ``(q, c, p, j)``
    indexed ``[block, ty, tx]``. ``col0`` is each block's first column (``blockIdx.x · TILE``);
    with ``b_rows``, ``tx`` walks B's rows (the ``K`` index)."""
    ty, tx = _threads(col0.shape[0])
    q, c = (tx, ty) if b_rows else (ty, tx)
    return q, c, p0 + q, col0[:, None, None] + c


def gemm_tiled(A, a0, a1, B, b0, b1, C, c0, c1, M, N, Kdim, v, v0, v1, mode, alpha, beta,  # noqa: ANN001
               layout, grid=None) -> None:
    """``fastbp_gemm_tiled``, thread by thread: the tile loads by ``layout``, then the product."""
    A, B, C, v = Pointer(A), Pointer(B), Pointer(C), Pointer(v)
    M, N, Kdim, T = int(M), int(N), int(Kdim), K.TILE
    gx, gy = grid if grid is not None else (-(-N // T), -(-M // T))
    by, bx = np.divmod(np.arange(gy * gx), gx)        # one entry per block
    a_rows = bool(int(layout) & K.LOAD_A_ALONG_ROWS)
    b_rows = bool(int(layout) & K.LOAD_B_ALONG_ROWS)
    blocks = np.arange(gy * gx)[:, None, None]
    acc = np.zeros((gy * gx, T, T), dtype=np.result_type(A.flat, B.flat))
    for p0 in range(0, Kdim, T):
        As = np.zeros((gy * gx, T, T), dtype=acc.dtype)
        Bs = np.zeros((gy * gx, T, T), dtype=acc.dtype)
        a_set = np.zeros((gy * gx, T, T), dtype=bool)
        b_set = np.zeros((gy * gx, T, T), dtype=bool)
        r, q, ai, ap = a_tile_loads(a_rows, by * T, p0)
        ok = (ai < M) & (ap < Kdim)
        As[blocks, r, q] = np.where(ok, A[np.where(ok, ai * a0 + ap * a1, 0)], 0)
        a_set[blocks, r, q] = True
        q, c, bp, bj = b_tile_loads(b_rows, bx * T, p0)
        ok = (bp < Kdim) & (bj < N)
        Bs[blocks, q, c] = np.where(ok, B[np.where(ok, bp * b0 + bj * b1, 0)], 0)
        b_set[blocks, q, c] = True
        assert a_set.all() and b_set.all(), "a shared tile element was not loaded"
        acc += As @ Bs                                 # acc[ty][tx] += Σ_q As[ty][q] Bs[q][tx]
    i = (by * T)[:, None, None] + np.arange(T)[None, :, None]
    j = (bx * T)[:, None, None] + np.arange(T)[None, None, :]
    ok = (i < M) & (j < N)
    i, j, acc = np.broadcast_to(i, ok.shape)[ok], np.broadcast_to(j, ok.shape)[ok], acc[ok]
    _epilogue(acc, C, i * c0 + j * c1, v, i * v0 + j * v1, mode, alpha, beta)


def gemm_dot(A, a0, a1, B, b0, b1, C, c0, c1, M, N, Kdim, v, v0, v1, mode, alpha, beta,  # noqa: ANN001
             layout) -> None:
    """``fastbp_gemm_dot``: one output per warp, a dot product along ``K``."""
    A, B, C, v = Pointer(A), Pointer(B), Pointer(C), Pointer(v)
    i = np.arange(int(M))[:, None]
    j = np.arange(int(N))[None, :]
    p = np.arange(int(Kdim))
    acc = A[i * a0 + p[None, :] * a1] @ B[p[:, None] * b0 + j * b1]
    _epilogue(acc, C, i * c0 + j * c1, v, i * v0 + j * v1, mode, alpha, beta)


def gather(xs, ys, order, step, m, n_in, n_out, x_rows, y_rows) -> None:  # noqa: ANN001
    """``fastbp_gather``."""
    base = int(step[0]) * int(m)
    xs_p, ys_p, xr, yr = Pointer(xs), Pointer(ys), Pointer(x_rows), Pointer(y_rows)
    rows = order[base: base + int(m)]
    xr[np.arange(int(m) * int(n_in))] = xs_p[(rows[:, None] * n_in
                                             + np.arange(int(n_in))[None, :]).reshape(-1)]
    yr[np.arange(int(m) * int(n_out))] = ys_p[(rows[:, None] * n_out
                                               + np.arange(int(n_out))[None, :]).reshape(-1)]


def output_error(a, y_rows, delta, n_out, m, cost_code, tiny, partial, done, cost) -> None:  # noqa: ANN001
    """``fastbp_output_error`` (the ticket in ``done`` must be 0 before and is 0 after)."""
    assert int(done[0]) == 0, "the output-error ticket was not reset by the last launch"
    t = np.arange(int(n_out) * int(m))
    i, j = t // m, t % m
    av = Pointer(a)[t]
    d = av - Pointer(y_rows)[j * n_out + i]
    if cost_code == K.COST_QUADRATIC:
        Pointer(delta)[t] = d * av * (1 - av)
        cost[0] += float(np.sum(0.5 * d.astype(np.float64) ** 2))
    elif cost_code == K.COST_LOG_LIKELIHOOD:
        Pointer(delta)[t] = d
        yv = Pointer(y_rows)[j * n_out + i].astype(np.float64)
        picked = yv != 0
        cost[0] -= float(np.sum(yv[picked] * np.log(np.maximum(av[picked], tiny))
                                .astype(np.float64)))
    else:
        Pointer(delta)[t] = d
        q = np.maximum(1 - np.abs(d), tiny)
        cost[0] -= float(np.sum(np.log(q).astype(np.float64)))


def bias_update(b, delta, n, m, alpha, step, advance) -> None:  # noqa: ANN001
    """``fastbp_bias_update``."""
    d = Pointer(delta)[np.arange(int(n) * int(m))].reshape(int(n), int(m))
    bp = Pointer(b)
    bp[np.arange(int(n))] = bp[np.arange(int(n))] - alpha * d.sum(axis=1)
    if advance:
        step[0] += 1


def softmax_columns(z, n, m) -> None:  # noqa: ANN001
    """``fastbp_softmax_columns``: each column of the ``(n, m)`` row-major ``z``, shifted by
    its largest entry."""
    p = Pointer(z)
    idx = np.arange(int(n) * int(m))
    cols = p[idx].reshape(int(n), int(m))
    e = np.exp(cols - cols.max(axis=0, keepdims=True))
    p[idx] = (e * (1 / e.sum(axis=0, keepdims=True))).reshape(-1)


U32 = np.uint32


def mix(x: np.ndarray) -> np.ndarray:
    """``fastbp_mix`` (lowbias32) on ``uint32`` arrays, line by line as the CUDA source."""
    x = np.asarray(x, dtype=U32)
    x = x ^ (x >> U32(16))
    x = x * U32(0x7FEB352D)
    x = x ^ (x >> U32(15))
    x = x * U32(0x846CA68B)
    return x ^ (x >> U32(16))


def step_key(seed: Any, step: Any, layer: Any) -> int:
    """``fastbp_step_key``: ``mix(seed ^ mix(step·2^8 + layer))`` in ``uint32``."""
    with np.errstate(over="ignore"):
        inner = (U32(step) << U32(8)) + U32(layer)
        return int(mix(U32(seed) ^ mix(inner)))


def _dropout(key: int, a: Any, factor: Any, dropped: Any, n: int, m: int, neuron: int,
             threshold: Any, scale: Any) -> None:
    t = np.arange(int(n) * int(m))
    with np.errstate(over="ignore"):
        h = mix(U32(key) + t.astype(U32))
    av = Pointer(a)[t]
    d = np.where(h >= U32(threshold), scale, 0).astype(av.dtype)
    if int(neuron) == 0:
        fp = av * (1 - av)
    elif int(neuron) == 1:
        fp = 1 - av * av
    else:
        fp = (av > 0).astype(av.dtype)
    Pointer(dropped)[t] = av * d
    Pointer(factor)[t] = fp * d


def dropout_key(a, factor, dropped, n, m, key, neuron, threshold, scale) -> None:  # noqa: ANN001
    """``fastbp_dropout_key``: the mask of ``key``; writes ``ã = a ⊙ D`` and ``F = f'(z) ⊙ D``."""
    _dropout(int(key), a, factor, dropped, n, m, neuron, threshold, scale)


def dropout_step(a, factor, dropped, n, m, seed, step, layer, neuron, threshold,  # noqa: ANN001
                 scale) -> None:
    """``fastbp_dropout_step``: the key from ``seed[0]``, mini-batch ``seed[1] + step[0]``."""
    with np.errstate(over="ignore"):
        number = U32(seed[1]) + U32(int(step[0]) & 0xFFFFFFFF)
    _dropout(step_key(seed[0], number, layer), a, factor, dropped, n, m, neuron, threshold, scale)


def velocity_apply(p, v, size, l2, l1) -> None:  # noqa: ANN001
    """``fastbp_velocity_apply``: ``v ← v − l2 p − l1 sgn p``, ``p ← p + v``."""
    t = np.arange(int(size))
    pp, vp = Pointer(p), Pointer(v)
    pv = pp[t]
    vv = vp[t] - l2 * pv - l1 * np.sign(pv)
    vp[t] = vv
    pp[t] = pv + vv


def bias_velocity(b, vb, delta, n, m, alpha, mu, step, advance) -> None:  # noqa: ANN001
    """``fastbp_bias_velocity``: ``v ← μ v − α Σ_j δ_j``, ``b ← b + v``."""
    d = Pointer(delta)[np.arange(int(n) * int(m))].reshape(int(n), int(m))
    rows = np.arange(int(n))
    bp, vp = Pointer(b), Pointer(vb)
    v = mu * vp[rows] - alpha * d.sum(axis=1)
    vp[rows] = v
    bp[rows] = bp[rows] + v
    if advance:
        step[0] += 1


def spin(ns) -> None:  # noqa: ANN001
    """``fastbp_spin``: holds the stream on a GPU; nothing to model on the host."""


KERNELS: dict[str, Callable[..., None]] = {
    "fastbp_spin": spin, "fastbp_softmax_columns": softmax_columns, "fastbp_gemm_tiled": gemm_tiled,
    "fastbp_gemm_dot": gemm_dot, "fastbp_gather": gather, "fastbp_output_error": output_error,
    "fastbp_bias_update": bias_update, "fastbp_dropout_key": dropout_key,
    "fastbp_dropout_step": dropout_step, "fastbp_velocity_apply": velocity_apply,
    "fastbp_bias_velocity": bias_velocity,
}


def run_kernel(name: str, grid: tuple, block: tuple, args: tuple) -> None:
    """Run kernel ``name`` with the launch's ``grid`` and ``block`` on NumPy arrays."""
    if name == "fastbp_gemm_tiled":
        assert tuple(block) == (K.TILE, K.TILE), block
        tiled: Callable[..., None] = gemm_tiled  # looked up now: tests replace it
        tiled(*args, grid=tuple(grid))
    else:
        KERNELS[name](*args)


def launch(item: Launch) -> None:
    """Run one launch of a :class:`~fastbp_cupy.graph.StepProgram` on NumPy arrays."""
    run_kernel(item.kernel, item.grid, item.block, item.args)
