"""The launches of the raw kernels (:mod:`fastbp_cupy.kernels`): for each kernel, a function
that checks its arrays and gives a :class:`Launch` (kernel, grid, block, arguments) with the
arguments as the CUDA signature takes them (element strides, ``int``/``long long`` widths, the
dtype's ``real``). The captured step (:mod:`fastbp_cupy.graph`), the eager step
(:mod:`fastbp_cupy.eager`), the emulator and the kernel checks all build their launches here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fastbp.core import dropout as drop
from fastbp.core.costs import CrossEntropyCost, LogLikelihoodCost, QuadraticCost

from . import kernels as K

# Warp-per-output GEMM when there are few outputs and a long inner dimension.
DOT_MIN_K = 64
DOT_MAX_OUTPUTS = 8192


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel<<<grid, block>>>(*args)``."""

    kernel: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    args: tuple[Any, ...]


class NotCapturable(Exception):
    """The raw kernels cannot run this plan (the reason is the message): use the generic loop."""


def cost_kind(cost: Any) -> int:
    """The raw kernels' code for ``cost``; ``NotCapturable`` for a cost they do not know."""
    bp1 = getattr(cost, "output_error", None)
    if bp1 is QuadraticCost.output_error:
        return K.COST_QUADRATIC
    if bp1 is CrossEntropyCost.output_error:
        return K.COST_CROSS_ENTROPY
    if bp1 is LogLikelihoodCost.output_error:
        return K.COST_LOG_LIKELIHOOD
    raise NotCapturable(f"the cost {getattr(cost, '__name__', cost)!r} has no raw kernel")


def check_arrays(weights: Sequence[Any], biases: Sequence[Any], xs: Any, ys: Any) -> np.dtype:
    """The common dtype of the parameters and the data set, if the raw kernels take them
    (float32 or float64, C-contiguous); ``NotCapturable`` saying why not."""
    dtype = np.dtype(str(xs.dtype))
    if dtype.name not in ("float32", "float64"):
        raise NotCapturable(f"the raw kernels run in float32 or float64, not {dtype.name}")
    arrays = [*weights, *biases, xs, ys]
    if not all(_contiguous(a) and np.dtype(str(a.dtype)) == dtype for a in arrays):
        raise NotCapturable("parameters and data must be C-contiguous and of one dtype")
    return dtype


def strides(a: Any) -> tuple[int, int]:
    """Element strides ``(s0, s1)`` of a 2-D array or view: ``a[i, j]`` is at ``i s0 + j s1``."""
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def _contiguous(a: Any) -> bool:
    return bool(a.flags.c_contiguous)


def walks_rows(a: Any) -> bool:
    """Whether a tile load of the matrix ``a`` coalesces with ``threadIdx.x`` walking its row
    index: its unit (smallest) stride runs down a column, e.g. a transposed view."""
    rows, cols = int(a.shape[0]), int(a.shape[1])
    if rows == 1:
        return False
    if cols == 1:
        return True
    s0, s1 = strides(a)
    return abs(s0) < abs(s1)


def tile_layout(A: Any, B: Any) -> int:
    """The tiled GEMM's ``layout`` bits for ``A B`` (:data:`~fastbp_cupy.kernels.LOAD_A_ALONG_ROWS`
    and :data:`~fastbp_cupy.kernels.LOAD_B_ALONG_ROWS`): loads follow each operand's unit stride."""
    return ((K.LOAD_A_ALONG_ROWS if walks_rows(A) else 0)
            | (K.LOAD_B_ALONG_ROWS if walks_rows(B) else 0))


def gemm_launch(A: Any, B: Any, C: Any, v: Any, mode: int, alpha: float = 0.0,
                beta: float = 0.0, kernel: str | None = None) -> Launch:
    """``C = epilogue(A B)`` for logical matrices given as arrays or views (see the kernels).

    ``kernel`` forces ``fastbp_gemm_tiled`` or ``fastbp_gemm_dot``; by default the warp-per-output
    kernel runs where there are few outputs over a long ``K`` and both operands have unit stride
    along ``K``, the tiled one everywhere else.
    """
    M, Kdim = int(A.shape[0]), int(A.shape[1])
    N = int(B.shape[1])
    assert int(B.shape[0]) == Kdim and tuple(C.shape) == (M, N), (A.shape, B.shape, C.shape)
    v0, v1 = strides(v)
    if v.shape[1] == 1:  # a bias column broadcasts along the batch
        v1 = 0
    real = np.float32 if np.dtype(str(C.dtype)) == np.float32 else np.float64
    i32, i64 = np.int32, np.int64
    (a0, a1), (b0, b1) = strides(A), strides(B)
    layout = tile_layout(A, B)
    args = (A, i64(a0), i64(a1), B, i64(b0), i64(b1), C, *map(i64, strides(C)),
            i32(M), i32(N), i32(Kdim), v, i64(v0), i64(v1), i32(mode), real(alpha), real(beta),
            i32(layout))
    if kernel is None:
        dot = (Kdim >= DOT_MIN_K and M * N <= DOT_MAX_OUTPUTS and a1 == 1 and b0 == 1)
        kernel = "fastbp_gemm_dot" if dot else "fastbp_gemm_tiled"
    if kernel == "fastbp_gemm_dot":
        blocks = math.ceil(M * N * 32 / K.DOT_THREADS)
        return Launch("fastbp_gemm_dot", (blocks,), (K.DOT_THREADS,), args)
    grid = (math.ceil(N / K.TILE), math.ceil(M / K.TILE))
    return Launch("fastbp_gemm_tiled", grid, (K.TILE, K.TILE), args)


def reduce_blocks(total: int) -> int:
    """Blocks of the output-error kernel for ``total`` outputs."""
    per_block = K.REDUCE_THREADS * K.REDUCE_PER_THREAD
    return max(1, min(K.REDUCE_MAX_BLOCKS, math.ceil(total / per_block)))


class Accumulator:
    """The epoch's summed cost (float64) and the output-error kernel's scratch, in device
    memory: ``partial`` (one sum per block) and ``done`` (the blocks' ticket, back to 0 after
    every launch). One per plan, shared by its captured and eager steps."""

    def __init__(self, xp: Any) -> None:
        self.cost = xp.zeros((1,), dtype=np.float64)
        self.partial = xp.zeros((K.REDUCE_MAX_BLOCKS,), dtype=np.float64)
        self.done = xp.zeros((1,), dtype=np.uint32)


def output_error_launch(a: Any, y_rows: Any, delta: Any, cost_code: int, acc: Accumulator
                        ) -> Launch:
    """BP1 and the cost for ``a``, ``delta`` ``(n_out, m)`` and ``y_rows`` ``(m, n_out)``, all
    C-contiguous; the batch's cost is added to ``acc.cost``."""
    n_out, m = int(a.shape[0]), int(a.shape[1])
    assert tuple(delta.shape) == (n_out, m) and tuple(y_rows.shape) == (m, n_out)
    assert all(_contiguous(x) for x in (a, y_rows, delta))
    dtype = np.dtype(str(a.dtype))
    real = np.float32 if dtype == np.float32 else np.float64
    i32 = np.int32
    return Launch("fastbp_output_error", (reduce_blocks(n_out * m),), (K.REDUCE_THREADS,),
                  (a, y_rows, delta, i32(n_out), i32(m), i32(cost_code), real(np.finfo(dtype).tiny),
                   acc.partial, acc.done, acc.cost))


def softmax_launch(z: Any) -> Launch:
    """Softmax down each column of ``z`` ``(n, m)``, C-contiguous, in place."""
    n, m = int(z.shape[0]), int(z.shape[1])
    assert _contiguous(z)
    return Launch("fastbp_softmax_columns", (math.ceil(m / K.SOFTMAX_THREADS),),
                  (K.SOFTMAX_THREADS,), (z, np.int32(n), np.int32(m)))


def gather_launch(xs: Any, ys: Any, order: Any, step: Any, m: int, x_rows: Any, y_rows: Any
                  ) -> Launch:
    """The mini-batch of step ``step[0]``: ``x_rows[r] = xs[order[step·m + r]]``, same for
    ``y_rows`` (sample-major, C-contiguous)."""
    n_in, n_out = int(xs.shape[1]), int(ys.shape[1])
    total = m * (n_in + n_out)
    i32 = np.int32
    return Launch("fastbp_gather", (min(math.ceil(total / 256), 1024),), (256,),
                  (xs, ys, order, step, i32(m), i32(n_in), i32(n_out), x_rows, y_rows))


def bias_launch(b: Any, delta: Any, alpha: float, step: Any, advance: bool) -> Launch:
    """BP3 + SGD, ``b ← b − α Σ_j δ_j``, one warp per row; ``advance`` moves ``step`` on."""
    n, m = int(delta.shape[0]), int(delta.shape[1])
    real = np.float32 if np.dtype(str(b.dtype)) == np.float32 else np.float64
    rows_per_block = K.BIAS_THREADS // 32
    return Launch("fastbp_bias_update", (math.ceil(n / rows_per_block),), (K.BIAS_THREADS,),
                  (b, delta, np.int32(n), np.int32(m), real(alpha), step, np.int32(advance)))


def element_blocks(total: int) -> int:
    """Blocks of an elementwise raw kernel over ``total`` entries (grid-stride beyond)."""
    return max(1, min(K.ELEMENT_MAX_BLOCKS, math.ceil(total / K.ELEMENT_THREADS)))


def velocity_launch(p: Any, v: Any, l2: float, l1: float) -> Launch:
    """After the GEMM ``v ← μ v − α g``: ``v ← v − l2 p − l1 sgn p``, ``p ← p + v``."""
    assert _contiguous(p) and _contiguous(v) and tuple(p.shape) == tuple(v.shape)
    size = int(p.size)
    real = _real(p)
    return Launch("fastbp_velocity_apply", (element_blocks(size),), (K.ELEMENT_THREADS,),
                  (p, v, np.int64(size), real(l2), real(l1)))


def bias_velocity_launch(b: Any, vb: Any, delta: Any, alpha: float, mu: float, step: Any,
                         advance: bool) -> Launch:
    """BP3 with momentum, ``v ← μ v − α Σ_j δ_j``, ``b ← b + v``, one warp per row;
    ``advance`` moves ``step`` on."""
    n, m = int(delta.shape[0]), int(delta.shape[1])
    real = _real(b)
    rows_per_block = K.BIAS_THREADS // 32
    return Launch("fastbp_bias_velocity", (math.ceil(n / rows_per_block),), (K.BIAS_THREADS,),
                  (b, vb, delta, np.int32(n), np.int32(m), real(alpha), real(mu), step,
                   np.int32(advance)))


def dropout_args(a: Any, factor: Any, dropped: Any, kind: str) -> tuple[tuple[int, ...], Any]:
    """The grid and the leading arguments ``(a, factor, dropped, n, m)`` of a dropout kernel,
    after checking that the kernel can take the layer (C-contiguous ``(n, m)``; f' of σ, tanh,
    relu)."""
    if kind not in K.PRIME_KIND:
        raise NotCapturable(f"dropout on a {kind} layer has no raw kernel")
    n, m = int(a.shape[0]), int(a.shape[1])
    assert all(_contiguous(x) and tuple(x.shape) == (n, m) for x in (a, factor, dropped))
    return (element_blocks(n * m),), (a, factor, dropped, np.int32(n), np.int32(m))


def dropout_step_launch(a: Any, factor: Any, dropped: Any, kind: str, p: float, keys: Any,
                        step: Any, layer: int) -> Launch:
    """Hidden layer ``layer``'s dropout in the captured step: the key from ``keys`` (seed, first
    mini-batch) and the step counter; writes ``ã = a ⊙ D`` and ``F = f'(z) ⊙ D``."""
    grid, head = dropout_args(a, factor, dropped, kind)
    return Launch("fastbp_dropout_step", grid, (K.ELEMENT_THREADS,),
                  (*head, keys, step, np.int32(layer), np.int32(K.PRIME_KIND[kind]),
                   np.uint32(drop.threshold(p)), _real(a)(drop.scale(p))))


def _real(a: Any) -> Any:
    return np.float32 if np.dtype(str(a.dtype)) == np.float32 else np.float64


def poison(arrays: Sequence[Any]) -> None:
    """Fill ``arrays`` with NaN: a kernel that reads what no kernel wrote shows up at once."""
    for a in arrays:
        a.fill(np.nan)
