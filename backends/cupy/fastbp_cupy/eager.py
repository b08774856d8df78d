"""The eager step: cuBLAS for the products, fused kernels for the rest, no allocation per step.

One :class:`EagerProgram` holds the buffers of a batch size ``m`` for one training plan. A step:

* gather the mini-batch rows from the sample-major data set (``take`` into ``x_rows``, ``y_rows``);
* feedforward ``a^l = f(W^l a^{l-1} + b^l)``: one ``cublas.gemm`` and one fused kernel per layer
  (two for a softmax layer);
* BP1 and the cost in one raw kernel, which adds the batch's cost to the plan's accumulator in
  device memory (no temporary scalars, nothing read back);
* BP2 ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ f'(z^l)``, ``f'`` from ``a^l``: one GEMM and one fused
  kernel;
* BP3/BP4 folded into the SGD step on cuBLAS: ``W ← β W − (η/m) δ (a^{l-1})ᵀ`` is
  ``gemm('N', 'T', δ, a^{l-1}, out=W, alpha=−η/m, beta=β)`` and ``b ← b − (η/m) δ 1`` is
  ``gemm('N', 'N', δ, 1, out=b, alpha=−η/m, beta=1)``.

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
from .graph import (
    Accumulator,
    bias_velocity_launch,
    check_arrays,
    cost_kind,
    dropout_args,
    output_error_launch,
    poison,
    velocity_launch,
)


class EagerProgram:
    """The eager steps of batch size ``m`` over ``plan``'s arrays (see the module)."""

    def __init__(self, backend: Any, plan: Any, m: int, acc: Accumulator, *,
                 poison_buffers: bool = False) -> None:
        dtype = check_arrays(plan.weights, plan.biases, plan.xs, plan.ys)
        kind = cost_kind(plan.cost)
        cp = backend.cp
        self.backend, self.m, self.acc = backend, m, acc
        self.real = "float" if dtype == np.float32 else "double"
        sizes = [int(plan.xs.shape[1])] + [int(w.shape[0]) for w in plan.weights]
        self.x_rows = cp.empty((m, sizes[0]), dtype=dtype)
        self.y_rows = cp.empty((m, sizes[-1]), dtype=dtype)
        self.activations = [cp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.deltas = [cp.empty((k, m), dtype=dtype) for k in sizes[1:]]
        self.ones = cp.ones((m, 1), dtype=dtype)
        hidden = sizes[1:-1] if plan.dropout else []
        self.factors = [cp.empty((k, m), dtype=dtype) for k in hidden]  # F^l = f'(z^l) ⊙ D^l
        self.dropped = [cp.empty((k, m), dtype=dtype) for k in hidden]  # ã^l = a^l ⊙ D^l
        self.no_step = cp.zeros((1,), dtype=np.int32)  # the bias kernel's counter, not moved
        if poison_buffers:
            poison([self.x_rows, self.y_rows, *self.activations, *self.deltas, *self.factors,
                    *self.dropped])
        self._functions = K.raw_functions(cp, self.real, backend.index)
        launch = output_error_launch(self.activations[-1], self.y_rows, self.deltas[-1], kind,
                                     acc)
        self._bp1 = (self._functions[launch.kernel], launch.grid, launch.block, launch.args)
        kinds = kinds_of(plan.kinds, len(plan.weights))
        self._dropout = []  # per hidden layer: grid, leading arguments, trailing arguments
        real = np.float32 if dtype == np.float32 else np.float64
        for l, (f, d) in enumerate(zip(self.factors, self.dropped)):
            grid, head = dropout_args(self.activations[l], f, d, kinds[l])
            tail = (np.int32(K.PRIME_KIND[kinds[l]]), np.uint32(drop.threshold(plan.dropout)),
                    real(drop.scale(plan.dropout)))
            self._dropout.append((grid, head, tail))

    def run(self, plan: Any, first: int, stop: int) -> None:
        """The steps over ``plan.order[first:stop]`` (a whole number of batches of ``m``); their
        summed cost is added to the accumulator. Nothing waits for the GPU."""
        if not plan.plain:
            self._run_techniques(plan, first, stop)
            return
        be, m = self.backend, self.m
        cp = be.cp
        W, B = plan.weights, plan.biases
        kinds = kinds_of(plan.kinds, len(W))
        acts, deltas = self.activations, self.deltas
        alpha, beta = plan.eta / m, plan.decay
        bp1, grid, block, args = self._bp1
        x = self.x_rows.T  # (n_in, m): an F-contiguous view cuBLAS takes as it is
        inputs = [x, *acts[:-1]]
        for start in range(first, stop, m):
            idx = plan.order[start:start + m]
            cp.take(plan.xs, idx, axis=0, out=self.x_rows)
            cp.take(plan.ys, idx, axis=0, out=self.y_rows)
            for w, b, a_in, a, kind in zip(W, B, inputs, acts, kinds):  # feedforward
                be._gemm("N", "N", w, a_in, a)
                be.bias_activation(a, b, kind)
            bp1(grid, block, args)  # BP1 and the batch's cost
            for l in range(len(W) - 2, -1, -1):  # BP2
                be._gemm("T", "N", W[l + 1], deltas[l + 1], deltas[l])
                be.mul_activation_prime(deltas[l], acts[l], kinds[l], None)
            for w, b, a_in, d in zip(W, B, inputs, deltas):  # BP3, BP4, SGD
                be._gemm("N", "T", d, a_in, w, alpha=-alpha, beta=beta)
                be._gemm("N", "N", d, self.ones, b, alpha=-alpha, beta=1.0)

    def _run_techniques(self, plan: Any, first: int, stop: int) -> None:
        """:meth:`run` with momentum, L1 or dropout (see the module): mini-batch ``s`` of the
        epoch, ``s = plan.first_step + start // batch_size``, draws the masks of
        ``step_key(plan.seed, s, l)``."""
        be, m = self.backend, self.m
        cp, fn = be.cp, self._functions
        W, B, L = plan.weights, plan.biases, len(plan.weights)
        kinds = kinds_of(plan.kinds, L)
        acts, deltas = self.activations, self.deltas
        alpha = plan.eta / m
        bp1, grid, block, args = self._bp1
        masked = bool(self.dropped)
        inputs = [self.x_rows.T, *(self.dropped if masked else acts[:-1])]
        updates = None
        if plan.velocities is not None:
            v_w, v_b = plan.velocities[:L], plan.velocities[L:]
            updates = [(v_w[l], velocity_launch(W[l], v_w[l], plan.l2_step, plan.l1_step),
                        bias_velocity_launch(B[l], v_b[l], deltas[l], alpha, plan.mu,
                                             self.no_step, False)) for l in range(L)]
        dropout_fn = fn["fastbp_dropout_key"]
        for start in range(first, stop, m):
            idx = plan.order[start:start + m]
            cp.take(plan.xs, idx, axis=0, out=self.x_rows)
            cp.take(plan.ys, idx, axis=0, out=self.y_rows)
            step = plan.first_step + start // plan.batch_size
            for l in range(L):  # feedforward, each hidden layer's mask after its activation
                be._gemm("N", "N", W[l], inputs[l], acts[l])
                be.bias_activation(acts[l], B[l], kinds[l])
                if masked and l < L - 1:
                    d_grid, head, tail = self._dropout[l]
                    key = np.uint32(drop.step_key(plan.seed, step, l))
                    dropout_fn(d_grid, (K.ELEMENT_THREADS,), (*head, key, *tail))
            bp1(grid, block, args)  # BP1 and the batch's cost
            for l in range(L - 2, -1, -1):  # BP2
                be._gemm("T", "N", W[l + 1], deltas[l + 1], deltas[l])
                if masked:
                    K.elementwise(cp, "mul_factor")(self.factors[l], deltas[l])
                else:
                    be.mul_activation_prime(deltas[l], acts[l], kinds[l], None)
            for l in range(L):  # BP3, BP4 and the step
                if updates is None:
                    be._gemm("N", "T", deltas[l], inputs[l], W[l], alpha=-alpha,
                             beta=plan.decay)
                    be._gemm("N", "N", deltas[l], self.ones, B[l], alpha=-alpha, beta=1.0)
                    continue
                v, w_step, b_step = updates[l]
                be._gemm("N", "T", deltas[l], inputs[l], v, alpha=-alpha, beta=plan.mu)
                fn[w_step.kernel](w_step.grid, w_step.block, w_step.args)
                fn[b_step.kernel](b_step.grid, b_step.block, b_step.args)
