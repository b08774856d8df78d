"""A stack of layer kinds ending in softmax: feedforward and backprop over a mini-batch.

The cost is the log-likelihood summed over the batch, ``C = −Σ_x ln a^L_{y(x)}``, so BP1 is
``δ^L = a^L − y`` (``y`` one-hot ``(n_out, m)``); each layer's backward then hands
``∂C/∂a^{l-1}`` to the one below. Gradients come back summed over the batch.
"""

from __future__ import annotations

from typing import Sequence

from ..ops import Array, Ops, Scalar
from .base import Layer, Workspace

Params = Sequence[tuple[Array, Array]]


class Stack:
    """``layers`` on ``backend``, with one :class:`Workspace` per layer."""

    def __init__(self, backend: Ops, layers: Sequence[Layer]) -> None:
        self.backend = backend
        self.layers = list(layers)
        self.workspaces = [Workspace(backend) for _ in self.layers]
        self.top = Workspace(backend)

    def feedforward(self, params: Params, x: Array, train: bool = False,
                    masks: Sequence[Array | None] | None = None) -> Array:
        """``a^L`` for the columns of ``x`` ``(n_in, m)``; ``masks[l]``: the dropout mask of
        layer ``l``'s input in training (``None``: none)."""
        a = x
        for l, (layer, (w, b), ws) in enumerate(zip(self.layers, params, self.workspaces)):
            mask = None if masks is None else masks[l]
            a = layer.forward(self.backend, w, b, a, ws, mask=mask, train=train)
        return a

    def backprop(self, params: Params, x: Array, y: Array,
                 masks: Sequence[Array | None] | None = None) -> tuple[Scalar, list]:
        """``(C, [(∂C/∂W^l, ∂C/∂b^l), ...])`` for the batch ``x``, one-hot ``y``: the summed
        log-likelihood and its gradients (the arrays are the workspaces', valid until the next
        call). A device may compute them its own way (:meth:`~fastbp.core.ops.Ops.
        stack_backprop`: the same sums, e.g. over two halves of the batch at once), else
        :meth:`backprop_here` does."""
        own = self.backend.stack_backprop(self, params, x, y, masks)
        return self.backprop_here(params, x, y, masks) if own is None else own

    def backprop_here(self, params: Params, x: Array, y: Array,
                      masks: Sequence[Array | None] | None = None) -> tuple[Scalar, list]:
        """:meth:`backprop` on this thread in the device's operations, the batch as one
        matrix."""
        backend = self.backend
        a = self.feedforward(params, x, train=True, masks=masks)
        scratch = self.top.get("scratch", tuple(a.shape))
        cost = -backend.sum_log_picked(a, y, scratch)
        error = backend.subtract(a, y, out=self.top.get("delta", tuple(a.shape)))  # BP1
        grads: list = [None] * len(self.layers)
        for l in range(len(self.layers) - 1, -1, -1):
            nabla_w, nabla_b, error = self.layers[l].backward(
                backend, params[l][0], self.workspaces[l], error, below=l > 0)
            grads[l] = (nabla_w, nabla_b)
        return cost, grads
