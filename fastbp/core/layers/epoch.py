"""The generic epoch of mini-batch SGD over any stack of layer kinds, on any device's operations.

Each step gathers the mini-batch on the device (rows of the sample-major training set,
:meth:`~fastbp.core.ops.Ops.take_rows`), runs :meth:`Stack.backprop` (the summed
log-likelihood and ``∂C/∂W^l``, ``∂C/∂b^l`` summed over the ``m`` samples), then updates every
layer with fastbp's chapter-3 rule:

- plain: ``W ← (1 − ηλ/n) W − (η/m) ∂C/∂W``, ``b ← b − (η/m) ∂C/∂b``
  (:meth:`~fastbp.core.ops.Ops.sgd_update`);
- with momentum ``μ`` or L1 ``λ₁``: ``v ← μ v − (η/m) ∂C/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``,
  ``W ← W + v``, biases without the decay terms (:meth:`~fastbp.core.ops.Ops.velocity_update`).

Dropout is each layer's own ``p_dropout`` (network3's rule: its input entries kept with
probability ``1 − p`` in training, ``W a`` scaled by ``1 − p`` at evaluation); the masks come
from :mod:`fastbp.core.dropout`'s counter hash, so they are the same on every device.

A device's own whole epoch (:meth:`~fastbp.core.ops.Ops.sgd_epoch`) takes plans of fully
connected stacks (:class:`~fastbp.core.plan.EpochPlan`, what ``Network(sizes)`` builds). A layer
stack that is one (:func:`dense_form`) is offered to it in that form, and the device declares
whether it takes it (a result) or not (``None``); every other stack, and every stack a device
does not take, runs :func:`sgd_epoch` here on that same device's operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .. import dropout as drop
from ..costs import LogLikelihoodCost
from ..evaluator import Evaluator
from ..ops import Array, Ops
from ..plan import EpochPlan, Layers
from ..update import apply_gradients
from .base import Layer
from .conv_pool import ConvPool
from .dense import FullyConnected, Softmax
from .stack import Stack

DENSE_NEURONS = ("sigmoid", "tanh", "relu")  # the hidden neurons of Network(sizes)


def dense_form(layers: Sequence[Layer]) -> tuple[list[int], tuple[str, ...]] | None:
    """``(sizes, kinds)`` of the ``Network(sizes)`` stack that computes the same as ``layers``
    (fully connected sigmoid, tanh or relu layers without dropout, then softmax without
    dropout: the same ``W^l``, ``b^l`` layout, feedforward, cost and update), else ``None``."""
    *hidden, top = layers
    if type(top) is not Softmax or top.p_dropout:
        return None
    for layer in hidden:
        if (type(layer) is not FullyConnected or layer.p_dropout
                or layer.activation not in DENSE_NEURONS):
            return None
    sizes = [int(layers[0].in_shape[0]), *(int(layer.out_shape[0]) for layer in layers)]
    return sizes, tuple(getattr(layer, "activation", "") for layer in layers)


@dataclass(eq=False)
class LayerPlan(EpochPlan):
    """An :class:`~fastbp.core.plan.EpochPlan` of a layer stack: the same typed pieces (its
    ``layers`` the stack's flattened sizes, the log-likelihood and each layer's neuron; the
    ``settings``' dropout the largest layer ``p_dropout``, so the driver draws an epoch's mask
    seed when it is not 0), plus the ``stack`` itself and, per batch size, its gather buffers.
    ``dense``: whether the stack is one ``Network(sizes)`` builds (:func:`dense_form`), so that
    the plan is also one a device's own epoch takes."""

    stack: Stack | None = None
    dense: bool = False
    buffers: dict[int, tuple[Array, Array, Array | None]] = field(default_factory=dict)

    def device_form(self) -> EpochPlan | None:
        """This plan where a device's own epoch may take it (a fully connected stack), else
        ``None``: every other stack runs :func:`sgd_epoch`."""
        return self if self.dense else None

    def batch(self, backend: Ops, m: int) -> tuple[Array, Array, Array | None]:
        """The gather buffers ``(m, n_in)``, ``(m, n_out)`` for a batch of ``m`` (made once),
        and ``(n_in, m)`` where the first layer reads the columns as maps (a conv layer: its
        reshape to ``(C, H, W, m)`` then needs no copy of its own)."""
        bufs = self.buffers.get(m)
        if bufs is None:
            assert self.stack is not None
            xs, ys = self.data.xs, self.data.ys
            n_in = int(xs.shape[1])
            maps = not isinstance(self.stack.layers[0], FullyConnected)
            bufs = self.buffers[m] = (backend.empty((m, n_in)),
                                      backend.empty((m, int(ys.shape[1]))),
                                      backend.empty((n_in, m)) if maps else None)
        return bufs


def layer_plan(plan: EpochPlan, stack: Stack) -> LayerPlan:
    """``plan`` (made by :func:`fastbp.model.inputs.make_plan` with the stack's
    :class:`~fastbp.core.plan.Layers`) as the plan of ``stack``."""
    return LayerPlan(plan.layers, plan.settings, plan.params, plan.data, plan.cache,
                     stack=stack, dense=dense_form(stack.layers) is not None)


def stack_layers(layers: Sequence[Layer]) -> Layers:
    """The :class:`~fastbp.core.plan.Layers` piece of a stack: the flattened sizes
    ``n_in, n_1 … n_L``, the log-likelihood cost and each layer's neuron."""
    sizes = [int(np.prod(layers[0].in_shape)), *(int(np.prod(lay.out_shape)) for lay in layers)]
    return Layers(sizes, LogLikelihoodCost, tuple(getattr(lay, "activation", "")
                                                  for lay in layers))


def run_layer_epoch(backend: Ops, plan: LayerPlan) -> Any:
    """One epoch of ``plan``: the device's own epoch where it takes the stack
    (:meth:`LayerPlan.device_form`), else :func:`sgd_epoch` on the device's operations.
    Returns the summed cost, possibly as a device scalar."""
    own = plan.device_form()
    total = None if own is None else backend.sgd_epoch(own)
    return sgd_epoch(backend, plan) if total is None else total


def masks(backend: Ops, stack: Stack, seed: int, step: int, m: int) -> list[Array | None]:
    """Each layer's input mask for training step ``step`` (1 kept, 0 dropped; ``None`` for a
    layer without dropout): :mod:`fastbp.core.dropout`'s ``D`` for key ``(seed, step, l)``."""
    out: list[Array | None] = []
    for l, layer in enumerate(stack.layers):
        if not layer.p_dropout:
            out.append(None)
            continue
        buf = stack.workspaces[l].get("mask", (int(np.prod(layer.in_shape)), m))
        backend.dropout_mask(drop.step_key(seed, step, l), layer.p_dropout, buf)
        out.append(backend.xp.sign(buf, out=buf))  # type: ignore[attr-defined]  # 1/(1−p) → 1
    return out


def sgd_epoch(backend: Ops, plan: LayerPlan, total: Any = 0.0) -> Any:
    """One pass of mini-batch SGD over ``plan.cursor.order`` (see the module docstring);
    returns ``total`` plus the summed cost of the batches, each taken before its update (the
    update: :func:`fastbp.core.update.apply_gradients`, the rule every epoch shares)."""
    stack, settings, cursor, data = plan.stack, plan.settings, plan.cursor, plan.data
    assert stack is not None
    params = list(zip(plan.params.weights, plan.params.biases))
    n, size = int(cursor.order.shape[0]), settings.batch_size
    for start in range(0, n, size):
        idx = cursor.order[start : min(start + size, n)]
        m = int(idx.shape[0])
        xbuf, ybuf, columns = plan.batch(backend, m)
        x = backend.take_rows(data.xs, idx, out=xbuf).T
        if columns is not None:  # C order for the maps, into a buffer kept for this m
            backend.copy_into(columns, x)
            x = columns
        y = backend.take_rows(data.ys, idx, out=ybuf).T
        step = cursor.first_step + start // size
        dropped = masks(backend, stack, cursor.seed, step, m) if settings.dropout else None
        cost, grads = stack.backprop(params, x, y, dropped)
        total = total + cost
        apply_gradients(backend, settings, plan.params, [g[0] for g in grads],
                        [g[1] for g in grads], m)
    return total


class LayerEvaluator(Evaluator):
    """Counts correct predictions of a layer stack on a fixed set (sample-major ``xs``, integer
    ``labels``), in chunks, with its own work buffers (training's stay as they are); the
    counting is :meth:`Evaluator.correct`'s."""

    def __init__(self, backend: Ops, layers: Sequence[Layer], xs: Array, labels: Array,
                 chunk: int = 2_000) -> None:
        self.backend, self.xs, self.labels, self.kinds = backend, xs, labels, None
        self.stack = Stack(backend, layers)
        self.n = int(xs.shape[0])
        self.chunk = max(1, min(chunk, self.n))

    def outputs(self, weights: list[Array], biases: list[Array], start: int, stop: int) -> Array:
        """``a^L`` for samples ``start:stop`` (one sample per column; evaluation's dropout
        scaling)."""
        x = self.backend.contiguous(self.xs[start:stop, :].T)
        return self.stack.feedforward(list(zip(weights, biases)), x, train=False)


def is_layer(obj: Any) -> bool:
    """Whether ``obj`` is a layer kind of this package."""
    return isinstance(obj, (ConvPool, FullyConnected))
