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

It runs the three built-in costs in float32/float64; anything else takes the generic loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastbp.core.neurons import kinds_of

from . import kernels as K
from .graph import Accumulator, check_arrays, cost_kind, output_error_launch, poison


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
        if poison_buffers:
            poison([self.x_rows, self.y_rows, *self.activations, *self.deltas])
        self._functions = K.raw_functions(cp, self.real, backend.index)
        launch = output_error_launch(self.activations[-1], self.y_rows, self.deltas[-1], kind,
                                     acc)
        self._bp1 = (self._functions[launch.kernel], launch.grid, launch.block, launch.args)

    def run(self, plan: Any, first: int, stop: int) -> None:
        """The steps over ``plan.order[first:stop]`` (a whole number of batches of ``m``); their
        summed cost is added to the accumulator. Nothing waits for the GPU."""
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
