"""The eager step: cuBLAS for the products, fused kernels for the rest, no allocation per step.

One :class:`EagerProgram` holds the buffers of a batch size ``m`` for one training plan. A step:

* gather the mini-batch rows from the sample-major data set into ``x_rows``, ``y_rows`` with the
  raw ``fastbp_gather`` (one launch; it reads the step's rows of the program's copy of the
  epoch's order through a step counter in device memory, which the last bias kernel moves on);
* feedforward ``a^l = f(W^l a^{l-1} + b^l)``: one ``cublas.gemm`` and one fused kernel per layer
  (two for a softmax layer);
* BP1 and the cost in one raw kernel, which adds the batch's cost to the plan's accumulator in
  device memory (no temporary scalars, nothing read back);
* BP2 ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ f'(z^l)``, ``f'`` from ``a^l``: one GEMM and one fused
  kernel;
* BP3/BP4 folded into the SGD step: ``W ← β W − (η/m) δ (a^{l-1})ᵀ`` is
  ``gemm('N', 'T', δ, a^{l-1}, out=W, alpha=−η/m, beta=β)`` on cuBLAS and ``b ← b − (η/m) Σ_j δ_j``
  the raw ``fastbp_bias_update`` (a warp per row; a kernel launch costs the host far less than a
  ``cublas.gemm`` call).

Every raw kernel's launch arguments are built once, with the program; a step issues them as
they are (only a dropout key changes per step).

Chapter 3's techniques keep the products on cuBLAS. With dropout, a raw kernel after each hidden
layer's activation draws its mask ``D^l`` (key from the host, :func:`fastbp.core.dropout.step_key`)
and writes ``ã^l = a^l ⊙ D^l``, which the next layer and BP4 read, and ``F^l = f'(z^l) ⊙ D^l``,
BP2's factor (``δ^l ← ((W^{l+1})ᵀ δ^{l+1}) ⊙ F^l``). With velocities (momentum, L1) the weight
update is ``gemm('N', 'T', δ, a^{l-1}, out=v, alpha=−η/m, beta=μ)`` then
``fastbp_velocity_apply`` (``v ← v − l2 W − l1 sgn W``, ``W ← W + v``), and the biases take
``fastbp_bias_velocity`` (``v_b ← μ v_b − (η/m) Σ_j δ_j``, ``b ← b + v_b``).

It runs the three built-in costs in float32/float64; anything else takes the generic loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastbp.core import dropout as drop
from fastbp.core.neurons import kinds_of

from . import kernels as K
from .launches import (
    Accumulator,
    Launch,
    bias_launch,
    bias_velocity_launch,
    check_arrays,
    cost_kind,
    dropout_args,
    gather_launch,
    output_error_launch,
    poison,
    velocity_launch,
)


class EagerProgram:
    """The eager steps of batch size ``m`` over ``plan``'s arrays (see the module)."""

    def __init__(self, backend: Any, plan: Any, m: int, acc: Accumulator, *,
                 poison_buffers: bool = False) -> None:
        params, data, settings = plan.params, plan.data, plan.settings
        dtype = check_arrays(params.weights, params.biases, data.xs, data.ys)
        kind = cost_kind(plan.layers.cost)
        cp = backend.cp
        self.backend, self.m, self.acc = backend, m, acc
        self.real = "float" if dtype == np.float32 else "double"
        sizes = [int(data.xs.shape[1])] + [int(w.shape[0]) for w in params.weights]
        self.x_rows = cp.empty((m, sizes[0]), dtype=dtype)
        self.y_rows = cp.empty((m, sizes[-1]), dtype=dtype)
        self.activations = [cp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.deltas = [cp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        hidden = sizes[1:-1] if settings.dropout else []
        self.factors = [cp.empty((k, m), dtype=dtype) for k in hidden]  # F^l = f'(z^l) ⊙ D^l
        self.dropped = [cp.empty((k, m), dtype=dtype) for k in hidden]  # ã^l = a^l ⊙ D^l
        self.step = cp.zeros((1,), dtype=np.int32)  # the step within run(): gather reads it
        self.order = cp.zeros((data.n,), dtype=np.int64)  # run()'s rows
        if poison_buffers:
            poison([self.x_rows, self.y_rows, *self.activations, *self.deltas, *self.factors,
                    *self.dropped])
        self._functions = K.raw_functions(cp, self.real, backend.index)
        launch = output_error_launch(self.activations[-1], self.y_rows, self.deltas[-1], kind,
                                     acc)
        self._bp1 = self._bound(launch)
        self._gather = self._bound(gather_launch(data.xs, data.ys, self.order, self.step, m,
                                                 self.x_rows, self.y_rows))
        self._bias_key: float | None = None
        self._updates_key: tuple | None = None
        kinds = kinds_of(plan.layers.kinds, len(params.weights))
        self._dropout = []  # per hidden layer: grid, leading arguments, trailing arguments
        real = np.float32 if dtype == np.float32 else np.float64
        for l, (f, d) in enumerate(zip(self.factors, self.dropped)):
            grid, head = dropout_args(self.activations[l], f, d, kinds[l])
            tail = (np.int32(K.PRIME_KIND[kinds[l]]),
                    np.uint32(drop.threshold(settings.dropout)), real(drop.scale(settings.dropout)))
            self._dropout.append((grid, head, tail))

    def _bound(self, launch: Launch) -> tuple[Any, tuple, tuple, tuple]:
        """``launch`` with its kernel looked up: ``fn(grid, block, args)`` is the launch."""
        return self._functions[launch.kernel], launch.grid, launch.block, launch.args

    def _start(self, plan: Any, first: int, stop: int) -> None:
        """The rows of ``plan.cursor.order[first:stop]`` into the program's order, the step
        counter back to 0 (two launches per call, none per step)."""
        self.order[: stop - first] = plan.cursor.order[first:stop]
        self.step.fill(0)

    def run(self, plan: Any, first: int, stop: int) -> None:
        """The steps over ``plan.cursor.order[first:stop]`` (a whole number of batches of
        ``m``); their summed cost is added to the accumulator. Nothing waits for the GPU."""
        settings = plan.settings
        if not settings.plain:
            self._run_techniques(plan, first, stop)
            return
        be, m = self.backend, self.m
        W, B = plan.params.weights, plan.params.biases
        kinds = kinds_of(plan.layers.kinds, len(W))
        acts, deltas = self.activations, self.deltas
        alpha, beta = settings.eta / m, settings.decay
        bp1, gather, biases = self._bp1, self._gather, self._bias_updates(plan)
        x = self.x_rows.T  # (n_in, m): an F-contiguous view cuBLAS takes as it is
        inputs = [x, *acts[:-1]]
        self._start(plan, first, stop)
        for _ in range(first, stop, m):
            gather[0](*gather[1:])
            for w, b, a_in, a, kind in zip(W, B, inputs, acts, kinds):  # feedforward
                be._gemm("N", "N", w, a_in, a)
                be.bias_activation(a, b, kind)
            bp1[0](*bp1[1:])  # BP1 and the batch's cost
            for l in range(len(W) - 2, -1, -1):  # BP2
                be._gemm("T", "N", W[l + 1], deltas[l + 1], deltas[l])
                be.mul_activation_prime(deltas[l], acts[l], kinds[l], None)
            for w, a_in, d, bias in zip(W, inputs, deltas, biases):  # BP3, BP4, SGD
                be._gemm("N", "T", d, a_in, w, alpha=-alpha, beta=beta)
                bias[0](*bias[1:])

    def _run_techniques(self, plan: Any, first: int, stop: int) -> None:
        """:meth:`run` with momentum, L1 or dropout (see the module): mini-batch ``s`` of the
        epoch, ``s = first_step + start // batch_size``, draws the masks of
        ``step_key(seed, s, l)`` (the plan's cursor)."""
        be, m = self.backend, self.m
        cp, fn = be.cp, self._functions
        settings, cursor = plan.settings, plan.cursor
        W, B = plan.params.weights, plan.params.biases
        L = len(W)
        kinds = kinds_of(plan.layers.kinds, L)
        acts, deltas = self.activations, self.deltas
        alpha, decay, mu = settings.eta / m, settings.decay, settings.mu
        m_full, seed, first_step = settings.batch_size, cursor.seed, cursor.first_step
        bp1, gather = self._bp1, self._gather
        masked = bool(self.dropped)
        inputs = [self.x_rows.T, *(self.dropped if masked else acts[:-1])]
        updates = self._velocity_updates(plan) if settings.velocity else None
        biases = self._bias_updates(plan) if updates is None else []
        dropout_fn = fn["fastbp_dropout_key"]
        self._start(plan, first, stop)
        for start in range(first, stop, m):
            gather[0](*gather[1:])
            step = first_step + start // m_full
            for l in range(L):  # feedforward, each hidden layer's mask after its activation
                be._gemm("N", "N", W[l], inputs[l], acts[l])
                be.bias_activation(acts[l], B[l], kinds[l])
                if masked and l < L - 1:
                    d_grid, head, tail = self._dropout[l]
                    key = np.uint32(drop.step_key(seed, step, l))
                    dropout_fn(d_grid, (K.ELEMENT_THREADS,), (*head, key, *tail))
            bp1[0](*bp1[1:])  # BP1 and the batch's cost
            for l in range(L - 2, -1, -1):  # BP2
                be._gemm("T", "N", W[l + 1], deltas[l + 1], deltas[l])
                if masked:
                    K.elementwise(cp, "mul_factor")(self.factors[l], deltas[l])
                else:
                    be.mul_activation_prime(deltas[l], acts[l], kinds[l], None)
            for l in range(L):  # BP3, BP4 and the step
                if updates is None:
                    be._gemm("N", "T", deltas[l], inputs[l], W[l], alpha=-alpha, beta=decay)
                    bias = biases[l]
                    bias[0](*bias[1:])
                    continue
                v, w_step, b_step = updates[l]
                be._gemm("N", "T", deltas[l], inputs[l], v, alpha=-alpha, beta=mu)
                w_step[0](*w_step[1:])
                b_step[0](*b_step[1:])

    def _bias_updates(self, plan: Any) -> list[tuple[Any, tuple, tuple, tuple]]:
        """Per layer the bound launch of BP3 + SGD, ``b ← b − α Σ_j δ_j`` (the last one moves
        the step counter on), built once per ``α = η/m`` (a schedule may change ``η``)."""
        alpha = plan.settings.eta / self.m
        if self._bias_key != alpha:
            B = plan.params.biases
            L = len(B)
            self._bias = [self._bound(bias_launch(B[l], self.deltas[l], alpha,
                                                  self.step, l == L - 1)) for l in range(L)]
            self._bias_key = alpha
        return self._bias

    def _velocity_updates(self, plan: Any) -> list[tuple[Any, tuple, tuple]]:
        """Per layer: ``v`` of ``W^l``, and the bound launches of the weights' momentum step
        and of the biases' whole step (the last one moves the step counter on), built once
        per setting of ``μ``, ``l2``, ``l1``."""
        s, params = plan.settings, plan.params
        L, alpha = len(params.weights), s.eta / self.m
        key = (s.mu, s.l2_step, s.l1_step, alpha)
        if self._updates_key != key:
            W, B, V, deltas = params.weights, params.biases, params.velocities, self.deltas
            v_w, v_b = V[:L], V[L:]
            self._updates = [(v_w[l], self._bound(velocity_launch(W[l], v_w[l], s.l2_step,
                                                                  s.l1_step)),
                              self._bound(bias_velocity_launch(B[l], v_b[l], deltas[l], alpha,
                                                               s.mu, self.step, l == L - 1)))
                             for l in range(L)]
            self._updates_key = key
        return self._updates
