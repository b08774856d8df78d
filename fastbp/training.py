"""The training loop of the matrix path: work buffers, one epoch of mini-batch SGD, evaluation.

Mini-batches are gathered on the device from a sample-major copy of the data (``(N, n_in)``), so
``xbuf.T`` is the ``(n_in, m)`` batch with one sample per column, without a copy. Every buffer is
allocated once per batch size and reused: a warm step allocates no arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .backend import Array, Backend
from .equations import backpropagate, feedforward
from .memory import translate_oom


class Workspace:
    """The buffers one step of batch size ``m`` needs: ``a^l``, ``δ^l``, scratch, the batch."""

    def __init__(self, backend: Backend, sizes: list[int], m: int) -> None:
        self.m = m
        with translate_oom(backend, sizes, m):  # MemoryError -> DeviceError with the numbers
            self.activations = [backend.empty((n, m)) for n in sizes[1:]]
            self.deltas = [backend.empty((n, m)) for n in sizes[1:]]
            self.scratch = [backend.empty((n, m)) for n in sizes[1:]]
            self.xbuf = backend.empty((m, sizes[0]))
            self.ybuf = backend.empty((m, sizes[-1]))
            self.grad_w = [backend.empty((n, k)) for k, n in zip(sizes[:-1], sizes[1:])]
            self.grad_b = [backend.empty((n, 1)) for n in sizes[1:]]


@dataclass
class EpochPlan:
    """What one epoch of SGD works on; ``sgd_epoch`` (or a backend's own) carries it out.

    ``xs``/``ys`` are the sample-major training set on the device, ``order`` the epoch's sample
    order (device indices), ``decay`` the L2 factor ``1 − ηλ/n`` (1 without regularisation).
    """

    sizes: list[int]
    weights: list[Array]
    biases: list[Array]
    cost: Any
    xs: Array
    ys: Array
    order: Array
    batch_size: int
    eta: float
    decay: float = 1.0
    workspaces: dict[int, Workspace] = field(default_factory=dict)

    def workspace(self, backend: Backend, m: int) -> Workspace:
        ws = self.workspaces.get(m)
        if ws is None:
            ws = self.workspaces[m] = Workspace(backend, self.sizes, m)
        return ws


def sgd_epoch(backend: Backend, plan: EpochPlan, first: int = 0, total: Any = 0.0) -> Any:
    """One pass of mini-batch SGD over ``plan.order[first:]``; returns ``total`` plus the summed
    cost of the batches (a backend may pass a device scalar as ``total`` to keep it there).

    Each step: gather the batch, feedforward, BP1 and BP2, then the update with BP3 and BP4
    folded in: ``W^l ← (1 − ηλ/n) W^l − (η/m) δ^l (a^{l-1})ᵀ``, ``b^l ← b^l − (η/m) Σ_j δ^l_j``.
    """
    weights, biases, cost = plan.weights, plan.biases, plan.cost
    n = int(plan.order.shape[0])
    for start in range(first, n, plan.batch_size):
        idx = plan.order[start : min(start + plan.batch_size, n)]  # in bounds: Array API
        m = int(idx.shape[0])
        ws = plan.workspace(backend, m)
        x = backend.take_rows(plan.xs, idx, out=ws.xbuf).T
        y = backend.take_rows(plan.ys, idx, out=ws.ybuf).T
        feedforward(backend, weights, biases, x, ws.activations)
        total = total + backpropagate(
            backend, cost, weights, x, y, ws.activations, ws.deltas, ws.scratch
        )
        alpha = plan.eta / m
        inputs = [x, *ws.activations[:-1]]
        for l, (w, b) in enumerate(zip(weights, biases)):
            backend.sgd_weights(w, ws.deltas[l], inputs[l], alpha, plan.decay, ws.grad_w[l])
            backend.sgd_biases(b, ws.deltas[l], alpha, ws.grad_b[l])
    return total


class Evaluator:
    """Counts correct predictions on a fixed set, in chunks that reuse their buffers."""

    def __init__(self, backend: Backend, sizes: list[int], xs: Array, labels: Array,
                 chunk: int = 10_000) -> None:
        self.backend, self.xs, self.labels = backend, xs, labels
        self.n = int(xs.shape[0])
        self.chunk = max(1, min(chunk, self.n))
        self.activations = [backend.empty((k, self.chunk)) for k in sizes[1:]]

    def outputs(self, weights: list[Array], biases: list[Array], start: int, stop: int) -> Array:
        """``a^L`` for samples ``start:stop`` (one sample per column)."""
        x = self.xs[start:stop, :].T
        acts = [a[:, : stop - start] for a in self.activations]
        return feedforward(self.backend, weights, biases, x, acts)

    def correct(self, weights: list[Array], biases: list[Array]) -> int:
        """How many samples the network classifies correctly (argmax of ``a^L``)."""
        be, hits = self.backend, 0
        for start in range(0, self.n, self.chunk):
            stop = min(start + self.chunk, self.n)
            guess = be.argmax_columns(self.outputs(weights, biases, start, stop))
            hits = hits + be.count_equal(guess, self.labels[start:stop])
        return int(hits)
