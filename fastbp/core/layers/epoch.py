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
from ..ops import Array, Ops
from ..plan import EpochPlan
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


@dataclass
class LayerPlan:
    """What one epoch of a layer stack works on (the fields the epoch driver reads are those of
    :class:`~fastbp.core.plan.EpochPlan`): the stack, its parameters ``weights``/``biases`` on
    the device, the sample-major data ``xs (N, n_in)``, one-hot ``ys (N, n_out)``, the epoch's
    ``order``, the step's settings, ``velocities`` (every ``W^l``'s ``v``, then every
    ``b^l``'s; present when ``mu`` or ``l1`` is set), ``dropout`` the largest layer
    ``p_dropout`` (the driver draws an epoch's mask ``seed`` when it is not 0), and ``dense``:
    the same plan as an :class:`EpochPlan` for the device's own epoch, where one exists."""

    stack: Stack
    weights: list[Array]
    biases: list[Array]
    xs: Array
    ys: Array
    order: Array
    batch_size: int
    eta: float
    lmbda: float = 0.0
    mu: float = 0.0
    l1: float = 0.0
    velocities: list[Array] | None = None
    dropout: float = 0.0
    seed: int = 0
    first_step: int = 0
    dense: EpochPlan | None = None
    buffers: dict[int, tuple[Array, Array, Array | None]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """The number of training samples."""
        return int(self.xs.shape[0])

    @property
    def decay(self) -> float:
        """The L2 factor ``1 − ηλ/n``."""
        return 1.0 - self.eta * self.lmbda / self.n

    @property
    def l2_step(self) -> float:
        """``ηλ/n``, the L2 term of a step."""
        return self.eta * self.lmbda / self.n

    @property
    def l1_step(self) -> float:
        """``ηλ₁/n``, the L1 term of a step (times ``sgn W``)."""
        return self.eta * self.l1 / self.n

    def set_eta(self, eta: float) -> None:
        """A new learning rate ``η`` (the L2 factor follows it)."""
        self.eta = eta

    def device_plan(self) -> EpochPlan | None:
        """The plan in the form a device's own epoch takes (synchronised with this one: order,
        ``η``, first step), or ``None`` where the stack is not a fully connected one."""
        if self.dense is None:
            return None
        self.dense.order, self.dense.first_step = self.order, self.first_step
        self.dense.set_eta(self.eta)
        return self.dense

    def batch(self, backend: Ops, m: int) -> tuple[Array, Array, Array | None]:
        """The gather buffers ``(m, n_in)``, ``(m, n_out)`` for a batch of ``m`` (made once),
        and ``(n_in, m)`` where the first layer reads the columns as maps (a conv layer: its
        reshape to ``(C, H, W, m)`` then needs no copy of its own)."""
        bufs = self.buffers.get(m)
        if bufs is None:
            n_in = int(self.xs.shape[1])
            maps = not isinstance(self.stack.layers[0], FullyConnected)
            bufs = self.buffers[m] = (backend.empty((m, n_in)),
                                      backend.empty((m, int(self.ys.shape[1]))),
                                      backend.empty((n_in, m)) if maps else None)
        return bufs


def make_layer_plan(backend: Ops, stack: Stack, weights: list[Array], biases: list[Array],
                    xs: Array, ys: Array, batch_size: int, eta: float, *, lmbda: float = 0.0,
                    mu: float = 0.0, l1: float = 0.0, velocities: list[Array] | None = None,
                    workspaces: dict[Any, Any] | None = None) -> LayerPlan:
    """A :class:`LayerPlan` (``order`` is set per epoch), with its fully connected form when the
    stack has one (:func:`dense_form`; ``workspaces``: the cache of its work buffers)."""
    p = max(layer.p_dropout for layer in stack.layers)
    form = dense_form(stack.layers)
    dense = None
    if form is not None:
        sizes, kinds = form
        n = int(xs.shape[0])
        dense = EpochPlan(sizes, weights, biases, LogLikelihoodCost, xs, ys, order=None,
                          batch_size=batch_size, eta=eta, decay=1.0 - eta * lmbda / n,
                          workspaces={} if workspaces is None else workspaces, kinds=kinds,
                          lmbda=lmbda, mu=mu, l1=l1, velocities=velocities)
    return LayerPlan(stack, weights, biases, xs, ys, None, batch_size, eta, lmbda, mu, l1,
                     velocities, p, dense=dense)


def run_layer_epoch(backend: Ops, plan: LayerPlan) -> Any:
    """One epoch of ``plan``: the device's own epoch where it takes the stack
    (:meth:`LayerPlan.device_plan`), else :func:`sgd_epoch` on the device's operations.
    Returns the summed cost, possibly as a device scalar."""
    dense = plan.device_plan()
    total = None if dense is None else backend.sgd_epoch(dense)
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
    """One pass of mini-batch SGD over ``plan.order`` (see the module docstring); returns
    ``total`` plus the summed cost of the batches, each taken before its update."""
    params = list(zip(plan.weights, plan.biases))
    n, L = int(plan.order.shape[0]), len(params)
    v = plan.velocities
    for start in range(0, n, plan.batch_size):
        idx = plan.order[start : min(start + plan.batch_size, n)]
        m = int(idx.shape[0])
        xbuf, ybuf, columns = plan.batch(backend, m)
        x = backend.take_rows(plan.xs, idx, out=xbuf).T
        if columns is not None:  # C order for the maps, into a buffer kept for this m
            backend.copy_into(columns, x)
            x = columns
        y = backend.take_rows(plan.ys, idx, out=ybuf).T
        step = plan.first_step + start // plan.batch_size
        dropped = masks(backend, plan.stack, plan.seed, step, m) if plan.dropout else None
        cost, grads = plan.stack.backprop(params, x, y, dropped)
        total = total + cost
        alpha = plan.eta / m
        for l, ((w, b), (nabla_w, nabla_b)) in enumerate(zip(params, grads)):
            if v is None:
                backend.sgd_update(w, nabla_w, alpha, plan.decay)
                backend.sgd_update(b, nabla_b, alpha)
            else:
                backend.velocity_update(w, nabla_w, v[l], alpha, plan.mu, plan.l2_step,
                                        plan.l1_step)
                backend.velocity_update(b, nabla_b, v[L + l], alpha, plan.mu)
    return total


class LayerEvaluator:
    """Counts correct predictions of a layer stack on a fixed set (sample-major ``xs``, integer
    ``labels``), in chunks, with its own work buffers (training's stay as they are)."""

    def __init__(self, backend: Ops, layers: Sequence[Layer], xs: Array, labels: Array,
                 chunk: int = 2_000) -> None:
        self.backend, self.xs, self.labels = backend, xs, labels
        self.stack = Stack(backend, layers)
        self.n = int(xs.shape[0])
        self.chunk = max(1, min(chunk, self.n))

    def outputs(self, weights: list[Array], biases: list[Array], start: int, stop: int) -> Array:
        """``a^L`` for samples ``start:stop`` (one sample per column; evaluation's dropout
        scaling)."""
        x = self.backend.contiguous(self.xs[start:stop, :].T)
        return self.stack.feedforward(list(zip(weights, biases)), x, train=False)

    def correct(self, weights: list[Array], biases: list[Array]) -> int:
        """How many samples the network classifies as their labels (argmax of ``a^L``)."""
        be, hits = self.backend, 0
        for start in range(0, self.n, self.chunk):
            stop = min(start + self.chunk, self.n)
            guess = be.argmax_columns(self.outputs(weights, biases, start, stop))
            hits = hits + be.count_equal(guess, self.labels[start:stop])
        return int(hits)


def is_layer(obj: Any) -> bool:
    """Whether ``obj`` is a layer kind of this package."""
    return isinstance(obj, (ConvPool, FullyConnected))
