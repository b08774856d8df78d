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
arguments (strides, modes, order) are tested without a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fastbp.costs import CrossEntropyCost, QuadraticCost

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
    """This plan cannot run as a captured step (the reason is the message); train eagerly."""


def cost_kind(cost: Any) -> int:
    """The raw kernels' code for ``cost``; ``NotCapturable`` for a cost they do not know."""
    bp1 = getattr(cost, "output_error", None)
    if bp1 is QuadraticCost.output_error:
        return K.COST_QUADRATIC
    if bp1 is CrossEntropyCost.output_error:
        return K.COST_CROSS_ENTROPY
    raise NotCapturable(f"the cost {getattr(cost, '__name__', cost)!r} has no captured kernel")


def strides(a: Any) -> tuple[int, int]:
    """Element strides ``(s0, s1)`` of a 2-D array or view: ``a[i, j]`` is at ``i s0 + j s1``."""
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def _contiguous(a: Any) -> bool:
    return bool(a.flags.c_contiguous)


class StepProgram:
    """The kernel launches of one SGD step of batch size ``m``, on buffers it owns.

    Per step: gather the mini-batch (``order[step·m + r]``), feedforward ``a^l = σ(W^l a^{l-1} +
    b^l)``, BP1 with the cost, BP2 ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ a^l(1 − a^l)``, then the
    updates ``W^l ← β W^l − α δ^l (a^{l-1})ᵀ`` and ``b^l ← b^l − α Σ_j δ^l_j``, the last of which
    moves the step counter on. ``α = η/m``, ``β`` is the L2 decay.
    """

    def __init__(self, xp: Any, weights: Sequence[Any], biases: Sequence[Any], xs: Any, ys: Any,
                 cost: Any, m: int, alpha: float, beta: float) -> None:
        dtype = np.dtype(str(xs.dtype))
        if dtype.name not in ("float32", "float64"):
            raise NotCapturable(f"the captured step runs in float32 or float64, not {dtype.name}")
        arrays = [*weights, *biases, xs, ys]
        if not all(_contiguous(a) and np.dtype(str(a.dtype)) == dtype for a in arrays):
            raise NotCapturable("parameters and data must be C-contiguous and of one dtype")
        self.kind = cost_kind(cost)
        self.real = "float" if dtype == np.float32 else "double"
        self._scalar = np.float32 if dtype == np.float32 else np.float64
        self.dtype, self.m = dtype.name, m
        self.alpha, self.beta = alpha, beta
        self.weights, self.biases, self.xs, self.ys = list(weights), list(biases), xs, ys
        n, n_in = int(xs.shape[0]), int(xs.shape[1])
        n_out = int(ys.shape[1])
        sizes = [n_in] + [int(w.shape[0]) for w in weights]
        self.sizes, self.n = sizes, n
        # Buffers the graph reads and writes: allocated now, never freed while it lives.
        self.step = xp.zeros((1,), dtype=np.int32)
        self.order = xp.zeros((n,), dtype=np.int64)
        self.cost = xp.zeros((1,), dtype=np.float64)
        self.x_rows = xp.empty((m, n_in), dtype=dtype)
        self.y_rows = xp.empty((m, n_out), dtype=dtype)
        self.activations = [xp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.deltas = [xp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.launches = self._build()

    # -- building the launches -----------------------------------------------------------
    def _gemm(self, A: Any, B: Any, C: Any, v: Any, mode: int, alpha: float = 0.0,
              beta: float = 0.0) -> Launch:
        """``C = epilogue(A B)`` for logical matrices given as arrays or views."""
        M, Kdim = int(A.shape[0]), int(A.shape[1])
        N = int(B.shape[1])
        assert int(B.shape[0]) == Kdim and tuple(C.shape) == (M, N), (A.shape, B.shape, C.shape)
        v0, v1 = strides(v)
        if v.shape[1] == 1:  # a bias column broadcasts along the batch
            v1 = 0
        i32, i64, real = np.int32, np.int64, self._scalar
        args = (A, *map(i64, strides(A)), B, *map(i64, strides(B)), C, *map(i64, strides(C)),
                i32(M), i32(N), i32(Kdim), v, i64(v0), i64(v1), i32(mode), real(alpha),
                real(beta))
        if Kdim >= DOT_MIN_K and M * N <= DOT_MAX_OUTPUTS:
            blocks = math.ceil(M * N * 32 / K.DOT_THREADS)
            return Launch("fastbp_gemm_dot", (blocks,), (K.DOT_THREADS,), args)
        grid = (math.ceil(N / K.TILE), math.ceil(M / K.TILE))
        return Launch("fastbp_gemm_tiled", grid, (K.TILE, K.TILE), args)

    def _build(self) -> list[Launch]:
        i32, real = np.int32, self._scalar
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
            launches.append(self._gemm(W[l], inputs[l], acts[l], b[l], K.GEMM_FORWARD))
        tiny = float(np.finfo(self.dtype).tiny)
        launches.append(Launch("fastbp_output_error", (1,), (K.REDUCE_THREADS,),  # BP1
                               (acts[-1], self.y_rows, deltas[-1], i32(n_out), i32(m),
                                i32(self.kind), real(tiny), self.cost)))
        for l in range(L - 2, -1, -1):  # BP2
            launches.append(self._gemm(W[l + 1].T, deltas[l + 1], deltas[l], acts[l], K.GEMM_BP2))
        for l in range(L):  # BP3, BP4 and the SGD step
            launches.append(self._gemm(deltas[l], inputs[l].T, W[l], W[l], K.GEMM_SGD,
                                       alpha=self.alpha, beta=self.beta))
            n = self.sizes[l + 1]
            launches.append(Launch("fastbp_bias_update", (math.ceil(n / 128),), (128,),
                                   (b[l], deltas[l], i32(n), i32(m), real(self.alpha),
                                    self.step, i32(l == L - 1))))
        return launches

    def run(self, launch: Callable[[Launch], None], steps: int = 1) -> None:
        """Issue ``steps`` steps through ``launch`` (a kernel call, or the emulator)."""
        for _ in range(steps):
            for item in self.launches:
                launch(item)


class CapturedEpoch:
    """A :class:`StepProgram` captured as CUDA graphs (K steps, and 1 step for the rest).

    ``run(order)`` replays them over the full mini-batches of ``order`` and returns the summed
    cost as a device scalar; nothing waits for the GPU.
    """

    def __init__(self, cp: Any, program: StepProgram, steps_per_graph: int) -> None:
        self.cp, self.program = cp, program
        module = K.raw_module(cp, program.real)
        # Compile and load every kernel now: nothing may be loaded during a capture.
        self._functions = {name: module.get_function(name) for name in K.RAW_KERNELS}
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

    def run(self, order: Any, steps: int) -> Any:
        """Replay ``steps`` steps over ``order`` (device indices); the summed cost, on device."""
        prog = self.program
        prog.order[: int(order.shape[0])] = order
        prog.step.fill(0)
        prog.cost.fill(0)
        self.prepare(steps)
        for _ in range(steps // self.k):
            self._graphs[self.k].launch()
        for _ in range(steps % self.k):
            self._graphs[1].launch()
        return prog.cost[0].copy()
