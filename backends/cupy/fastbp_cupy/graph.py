"""The training step as a CUDA graph: captured once, replayed for every mini-batch.

At small batch sizes a step is a few microseconds of GPU work behind a dozen kernel launches, so
the launches (CPU time) dominate. A captured graph replays them with no Python and no launch
cost. Inside a capture cuBLAS refuses to run and nothing may allocate or synchronise, so the
captured step is made of the raw kernels of :mod:`fastbp_cupy.kernels` on buffers allocated
beforehand; it learns which mini-batch it is from a step counter in device memory, so one graph
of K steps is replayed ``steps // K`` times per epoch.

Chapter 3's techniques are captured too. Momentum and L1 go through the velocities: the
weight-gradient GEMM writes ``v ← μ v − α δ aᵀ`` and ``fastbp_velocity_apply`` then does
``v ← v − l2 W − l1 sgn W``, ``W ← W + v``; ``fastbp_bias_velocity`` is the biases' step. Dropout
draws each hidden layer's mask inside the graph (``fastbp_dropout_step``): a kernel's arguments
are frozen at capture, so the key comes from device memory, the epoch's seed and first
mini-batch in ``keys`` (written before the replays, :meth:`CapturedEpoch.run`) and the step
counter the graph already moves on for its gather.

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

from fastbp.core import dropout as drop
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


class StepProgram:
    """The kernel launches of one SGD step of batch size ``m``, on buffers it owns.

    Per step: gather the mini-batch (``order[step·m + r]``), feedforward ``a^l = f(W^l a^{l-1} +
    b^l)`` (a softmax layer: one more kernel), BP1 with the cost, BP2 ``δ^l = ((W^{l+1})ᵀ
    δ^{l+1}) ⊙ f'(z^l)`` (``f'`` from ``a^l``; ``kinds``: each layer's neuron), then the
    updates ``W^l ← β W^l − α δ^l (a^{l-1})ᵀ`` and ``b^l ← b^l − α Σ_j δ^l_j``, the last of which
    moves the step counter on. ``α = η/m``, ``β`` is the L2 decay. The cost of every step is
    added to ``acc.cost``. With ``poison`` the work buffers start as NaN.

    With ``velocities`` (``v`` of every ``W^l``, then of every ``b^l``) the updates are chapter
    3's: ``v ← μ v − α δ aᵀ − l2 W − l1 sgn W``, ``W ← W + v`` (``l2 = ηλ/n``, ``l1 = ηλ₁/n``;
    ``β`` unused) and ``v_b ← μ v_b − α Σ_j δ_j``, ``b ← b + v_b``. With ``dropout`` ``p > 0``
    each hidden layer's mask ``D^l`` is drawn after its feedforward from ``keys`` (the epoch's
    seed and first mini-batch, set by :meth:`set_keys`) and the step counter: the next layer and
    BP4 read ``ã^l = a^l ⊙ D^l``, BP2 is ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ F^l`` with
    ``F^l = f'(z^l) ⊙ D^l``.
    """

    def __init__(self, xp: Any, weights: Sequence[Any], biases: Sequence[Any], xs: Any, ys: Any,
                 cost: Any, m: int, alpha: float, beta: float, *, acc: Accumulator | None = None,
                 poison_buffers: bool = False, kinds: Sequence[str] | None = None,
                 velocities: Sequence[Any] | None = None, mu: float = 0.0, l2: float = 0.0,
                 l1: float = 0.0, dropout: float = 0.0) -> None:
        dtype = check_arrays(weights, biases, xs, ys)
        if velocities is not None:
            check_arrays(velocities, [], xs, ys)
        self.kind = cost_kind(cost)
        self.kinds = tuple(kinds) if kinds is not None else \
            layer_kinds(len(weights), "sigmoid", output_of(cost))
        self.real = "float" if dtype == np.float32 else "double"
        self.dtype, self.m = dtype.name, m
        self.alpha, self.beta = alpha, beta
        self.weights, self.biases, self.xs, self.ys = list(weights), list(biases), xs, ys
        self.velocities = None if velocities is None else list(velocities)
        self.mu, self.l2, self.l1, self.dropout = mu, l2, l1, dropout
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
        hidden = sizes[1:-1] if dropout else []
        self.keys = xp.zeros((2,), dtype=np.uint32)  # the epoch's mask seed, first mini-batch
        self.factors = [xp.empty((k, m), dtype=dtype) for k in hidden]  # F^l = f'(z^l) ⊙ D^l
        self.dropped = [xp.empty((k, m), dtype=dtype) for k in hidden]  # ã^l = a^l ⊙ D^l
        if poison_buffers:
            poison([self.x_rows, self.y_rows, *self.activations, *self.deltas, *self.factors,
                    *self.dropped])
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
        masked = bool(self.dropped)
        inputs = [x, *(self.dropped if masked else acts[:-1])]
        for l in range(L):  # feedforward
            launches.append(gemm_launch(W[l], inputs[l], acts[l], b[l],
                                        K.FORWARD_MODE[self.kinds[l]]))
            if self.kinds[l] == "softmax":
                launches.append(softmax_launch(acts[l]))
            if masked and l < L - 1:  # D^l, ã^l and F^l of a hidden layer
                launches.append(dropout_step_launch(acts[l], self.factors[l], self.dropped[l],
                                                    self.kinds[l], self.dropout, self.keys,
                                                    self.step, l))
        launches.append(output_error_launch(acts[-1], self.y_rows, deltas[-1], self.kind,
                                            self.acc))  # BP1
        for l in range(L - 2, -1, -1):  # BP2
            if masked:
                launches.append(gemm_launch(W[l + 1].T, deltas[l + 1], deltas[l],
                                            self.factors[l], K.GEMM_BP2_FACTOR))
            else:
                launches.append(gemm_launch(W[l + 1].T, deltas[l + 1], deltas[l], acts[l],
                                            K.BP2_MODE[self.kinds[l]]))
        if self.velocities is not None:
            return launches + self._velocity_updates(inputs)
        for l in range(L):  # BP3, BP4 and the SGD step
            launches.append(gemm_launch(deltas[l], inputs[l].T, W[l], W[l], K.GEMM_SGD,
                                        alpha=self.alpha, beta=self.beta))
            launches.append(bias_launch(b[l], deltas[l], self.alpha, self.step, l == L - 1))
        return launches

    def _velocity_updates(self, inputs: list[Any]) -> list[Launch]:
        """BP3, BP4 and the momentum step of every layer (see the class)."""
        assert self.velocities is not None
        W, b, deltas, L = self.weights, self.biases, self.deltas, len(self.weights)
        v_w, v_b = self.velocities[:L], self.velocities[L:]
        launches = []
        for l in range(L):
            launches.append(gemm_launch(deltas[l], inputs[l].T, v_w[l], v_w[l], K.GEMM_SGD,
                                        alpha=self.alpha, beta=self.mu))
            launches.append(velocity_launch(W[l], v_w[l], self.l2, self.l1))
            launches.append(bias_velocity_launch(b[l], v_b[l], deltas[l], self.alpha, self.mu,
                                                 self.step, l == L - 1))
        return launches

    def set_keys(self, seed: int, first_step: int) -> None:
        """The epoch's mask seed and the number of its mini-batch where the steps start, in
        device memory (the captured dropout kernels read them; no wait)."""
        if self.dropped:
            self.keys[0] = np.uint32(seed & drop.MASK32)
            self.keys[1] = np.uint32(first_step & drop.MASK32)

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

    def run(self, order: Any, steps: int, seed: int = 0, first_step: int = 0) -> None:
        """Replay ``steps`` steps over ``order`` (device indices), adding their summed cost to
        ``program.cost``; with dropout the masks are those of ``seed`` from mini-batch
        ``first_step`` on. Nothing waits for the GPU."""
        prog = self.program
        self.prepare(steps)
        prog.order[: int(order.shape[0])] = order
        prog.step.fill(0)
        prog.set_keys(seed, first_step)
        for _ in range(steps // self.k):
            self._graphs[self.k].launch()
        for _ in range(steps % self.k):
            self._graphs[1].launch()
