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

from typing import Any, Callable, Sequence

import numpy as np

from fastbp.core import dropout as drop
from fastbp.core.costs import output_of
from fastbp.core.neurons import layer_kinds

from . import kernels as K
from .launches import (
    Accumulator,
    Launch,
    NotCapturable,
    bias_launch,
    bias_velocity_launch,
    check_arrays,
    cost_kind,
    dropout_args,
    dropout_step_launch,
    element_blocks,
    gather_launch,
    gemm_launch,
    output_error_launch,
    poison,
    reduce_blocks,
    softmax_launch,
    strides,
    tile_layout,
    velocity_launch,
    walks_rows,
)

# The launches live in :mod:`fastbp_cupy.launches`; these names stay importable from here.
__all__ = [
    "Accumulator", "Launch", "NotCapturable", "bias_launch", "bias_velocity_launch",
    "check_arrays", "cost_kind", "dropout_args", "dropout_step_launch",
    "element_blocks", "gather_launch", "gemm_launch", "output_error_launch", "poison",
    "reduce_blocks", "softmax_launch", "strides", "tile_layout", "velocity_launch",
    "walks_rows", "StepProgram", "CapturedEpoch",
]


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
        m, W, b = self.m, self.weights, self.biases
        acts, deltas = self.activations, self.deltas
        L = len(W)
        launches = [gather_launch(self.xs, self.ys, self.order, self.step, m, self.x_rows,
                                  self.y_rows)]
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
