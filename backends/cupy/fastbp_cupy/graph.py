"""The training step as a CUDA graph: captured once, replayed for every mini-batch.

At small batch sizes a step is a few microseconds of GPU work behind a dozen kernel launches, so
the launches (CPU time) dominate. A captured graph replays them with no Python and no launch
cost. Inside a capture cuBLAS refuses to run and nothing may allocate or synchronise, so the
captured step is made of the raw kernels of :mod:`fastbp_cupy.kernels` on buffers allocated
beforehand; it learns which mini-batch it is from a step counter in device memory, so one graph
of K steps is replayed ``steps // K`` times per epoch.

:class:`StepProgram` lists the launches of one step (kernel, grid, block, arguments) and is
written against any array module with ``empty``/``zeros`` and ``strides``: with CuPy it is
captured, with NumPy :mod:`fastbp_cupy.emulator` runs it on the CPU, which is how the launch
arguments (strides, modes, layouts, order) are tested without a GPU.

A program and its graphs hold raw pointers to the plan's parameters and data set: the backend
keeps them on the training plan that owns those arrays, so they are freed together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fastbp.core.costs import CrossEntropyCost, LogLikelihoodCost, QuadraticCost, output_of
from fastbp.core.neurons import layer_kinds

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


def output_error_launch(a: Any, y_rows: Any, delta: Any, kind: int, acc: Accumulator) -> Launch:
    """BP1 and the cost for ``a``, ``delta`` ``(n_out, m)`` and ``y_rows`` ``(m, n_out)``, all
    C-contiguous; the batch's cost is added to ``acc.cost``."""
    n_out, m = int(a.shape[0]), int(a.shape[1])
    assert tuple(delta.shape) == (n_out, m) and tuple(y_rows.shape) == (m, n_out)
    assert all(_contiguous(x) for x in (a, y_rows, delta))
    dtype = np.dtype(str(a.dtype))
    real = np.float32 if dtype == np.float32 else np.float64
    i32 = np.int32
    return Launch("fastbp_output_error", (reduce_blocks(n_out * m),), (K.REDUCE_THREADS,),
                  (a, y_rows, delta, i32(n_out), i32(m), i32(kind), real(np.finfo(dtype).tiny),
                   acc.partial, acc.done, acc.cost))


def softmax_launch(z: Any) -> Launch:
    """Softmax down each column of ``z`` ``(n, m)``, C-contiguous, in place."""
    n, m = int(z.shape[0]), int(z.shape[1])
    assert _contiguous(z)
    return Launch("fastbp_softmax_columns", (math.ceil(m / K.SOFTMAX_THREADS),),
                  (K.SOFTMAX_THREADS,), (z, np.int32(n), np.int32(m)))


def bias_launch(b: Any, delta: Any, alpha: float, step: Any, advance: bool) -> Launch:
    """BP3 + SGD, ``b ← b − α Σ_j δ_j``, one warp per row; ``advance`` moves ``step`` on."""
    n, m = int(delta.shape[0]), int(delta.shape[1])
    real = np.float32 if np.dtype(str(b.dtype)) == np.float32 else np.float64
    rows_per_block = K.BIAS_THREADS // 32
    return Launch("fastbp_bias_update", (math.ceil(n / rows_per_block),), (K.BIAS_THREADS,),
                  (b, delta, np.int32(n), np.int32(m), real(alpha), step, np.int32(advance)))


def poison(arrays: Sequence[Any]) -> None:
    """Fill ``arrays`` with NaN: a kernel that reads what no kernel wrote shows up at once."""
    for a in arrays:
        a.fill(np.nan)


class StepProgram:
    """The kernel launches of one SGD step of batch size ``m``, on buffers it owns.

    Per step: gather the mini-batch (``order[step·m + r]``), feedforward ``a^l = f(W^l a^{l-1} +
    b^l)`` (a softmax layer: one more kernel), BP1 with the cost, BP2 ``δ^l = ((W^{l+1})ᵀ
    δ^{l+1}) ⊙ f'(z^l)`` (``f'`` from ``a^l``; ``kinds``: each layer's neuron), then the
    updates ``W^l ← β W^l − α δ^l (a^{l-1})ᵀ`` and ``b^l ← b^l − α Σ_j δ^l_j``, the last of which
    moves the step counter on. ``α = η/m``, ``β`` is the L2 decay. The cost of every step is
    added to ``acc.cost``. With ``poison`` the work buffers start as NaN.
    """

    def __init__(self, xp: Any, weights: Sequence[Any], biases: Sequence[Any], xs: Any, ys: Any,
                 cost: Any, m: int, alpha: float, beta: float, *, acc: Accumulator | None = None,
                 poison_buffers: bool = False, kinds: Sequence[str] | None = None) -> None:
        dtype = check_arrays(weights, biases, xs, ys)
        self.kind = cost_kind(cost)
        self.kinds = tuple(kinds) if kinds is not None else \
            layer_kinds(len(weights), "sigmoid", output_of(cost))
        self.real = "float" if dtype == np.float32 else "double"
        self.dtype, self.m = dtype.name, m
        self.alpha, self.beta = alpha, beta
        self.weights, self.biases, self.xs, self.ys = list(weights), list(biases), xs, ys
        n, n_in = int(xs.shape[0]), int(xs.shape[1])
        n_out = int(ys.shape[1])
        sizes = [n_in] + [int(w.shape[0]) for w in weights]
        self.sizes, self.n = sizes, n
        # Buffers the graph reads and writes: allocated now, never freed while it lives.
        self.acc = acc if acc is not None else Accumulator(xp)
        self.step = xp.zeros((1,), dtype=np.int32)
        self.order = xp.zeros((n,), dtype=np.int64)
        self.x_rows = xp.empty((m, n_in), dtype=dtype)
        self.y_rows = xp.empty((m, n_out), dtype=dtype)
        self.activations = [xp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.deltas = [xp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        if poison_buffers:
            poison([self.x_rows, self.y_rows, *self.activations, *self.deltas])
        self.launches = self._build()

    @property
    def cost(self) -> Any:
        """The summed cost (float64, shape ``(1,)``) in device memory."""
        return self.acc.cost

    def _build(self) -> list[Launch]:
        i32 = np.int32
        m, W, b = self.m, self.weights, self.biases
        acts, deltas = self.activations, self.deltas
        n_in, n_out, L = self.sizes[0], self.sizes[-1], len(W)
        total = m * (n_in + n_out)
        launches = [Launch("fastbp_gather", (min(math.ceil(total / 256), 1024),), (256,),
                           (self.xs, self.ys, self.order, self.step, i32(m), i32(n_in),
                            i32(n_out), self.x_rows, self.y_rows))]
        x = self.x_rows.T  # (n_in, m): one sample per column, without a copy
        inputs = [x, *acts[:-1]]
        for l in range(L):  # feedforward
            launches.append(gemm_launch(W[l], inputs[l], acts[l], b[l],
                                        K.FORWARD_MODE[self.kinds[l]]))
            if self.kinds[l] == "softmax":
                launches.append(softmax_launch(acts[l]))
        launches.append(output_error_launch(acts[-1], self.y_rows, deltas[-1], self.kind,
                                            self.acc))  # BP1
        for l in range(L - 2, -1, -1):  # BP2
            launches.append(gemm_launch(W[l + 1].T, deltas[l + 1], deltas[l], acts[l],
                                        K.BP2_MODE[self.kinds[l]]))
        for l in range(L):  # BP3, BP4 and the SGD step
            launches.append(gemm_launch(deltas[l], inputs[l].T, W[l], W[l], K.GEMM_SGD,
                                        alpha=self.alpha, beta=self.beta))
            launches.append(bias_launch(b[l], deltas[l], self.alpha, self.step, l == L - 1))
        return launches

    def run(self, launch: Callable[[Launch], None], steps: int = 1) -> None:
        """Issue ``steps`` steps through ``launch`` (a kernel call, or the emulator)."""
        for _ in range(steps):
            for item in self.launches:
                launch(item)


class CapturedEpoch:
    """A :class:`StepProgram` captured as CUDA graphs (K steps, and 1 step for the rest).

    ``run(order, steps)`` replays them over the full mini-batches of ``order``, adding their cost
    to ``program.cost``; nothing waits for the GPU.
    """

    def __init__(self, cp: Any, program: StepProgram, steps_per_graph: int,
                 device: int = 0) -> None:
        self.cp, self.program = cp, program
        # Compile and load every kernel now: nothing may be loaded during a capture.
        self._functions = K.raw_functions(cp, program.real, device)
        self.k = max(1, steps_per_graph)
        self._graphs: dict[int, Any] = {}
        self._stream = cp.cuda.Stream(non_blocking=True)

    def _launch(self, item: Launch) -> None:
        self._functions[item.kernel](item.grid, item.block, item.args)

    def _graph(self, steps: int) -> Any:
        graph = self._graphs.get(steps)
        if graph is None:
            stream = self._stream
            with stream:
                stream.begin_capture()
                try:
                    self.program.run(self._launch, steps)
                except BaseException:
                    try:  # leave capture mode; the half-built graph is dropped
                        stream.end_capture()
                    except Exception:  # noqa: BLE001 - the first error is the one to report
                        pass
                    raise
                graph = stream.end_capture()
            self._graphs[steps] = graph
        return graph

    def prepare(self, steps: int) -> None:
        """Capture the graphs an epoch of ``steps`` full mini-batches will replay."""
        if steps >= self.k:
            self._graph(self.k)
        if steps % self.k:
            self._graph(1)

    def run(self, order: Any, steps: int) -> None:
        """Replay ``steps`` steps over ``order`` (device indices), adding their summed cost to
        ``program.cost``; nothing waits for the GPU."""
        prog = self.program
        self.prepare(steps)
        prog.order[: int(order.shape[0])] = order
        prog.step.fill(0)
        for _ in range(steps // self.k):
            self._graphs[self.k].launch()
        for _ in range(steps % self.k):
            self._graphs[1].launch()
