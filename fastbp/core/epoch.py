"""The generic epoch of mini-batch SGD, written once against the backend operations.

A backend that compiles or captures the whole epoch supplies its own (``Backend.sgd_epoch``); the
trainer falls back to :func:`sgd_epoch` here when it does not.
"""

from __future__ import annotations

from typing import Any

from . import dropout
from .equations import backpropagate, feedforward
from .ops import Ops
from .plan import EpochPlan
from .update import apply_deltas


def run_epoch(backend: Ops, plan: EpochPlan) -> Any:
    """One epoch of ``plan``: the backend's own (``backend.sgd_epoch``) when it has one, else
    :func:`sgd_epoch`. Returns the summed cost, possibly as a device scalar."""
    total = backend.sgd_epoch(plan)
    return sgd_epoch(backend, plan) if total is None else total


def sgd_epoch(backend: Ops, plan: EpochPlan, first: int = 0, total: Any = 0.0) -> Any:
    """One pass of mini-batch SGD over ``plan.cursor.order[first:]``; returns ``total`` plus the
    summed cost of the batches (a backend may pass a device scalar as ``total`` to keep it
    there).

    Each step: gather the batch, feedforward, BP1 and BP2, then the update
    (:func:`fastbp.core.update.apply_deltas`) with BP3 and BP4 folded in:
    ``W^l ← (1 − ηλ/n) W^l − (η/m) δ^l (a^{l-1})ᵀ``, ``b^l ← b^l − (η/m) Σ_j δ^l_j``, or the
    velocity form with momentum or L1; with dropout each hidden layer draws its mask first
    (:mod:`fastbp.core.dropout`).
    """
    layers, settings, params, cursor = plan.layers, plan.settings, plan.params, plan.cursor
    weights, biases, cost, kinds = params.weights, params.biases, layers.cost, layers.kinds
    xs, ys, order, m_full = plan.data.xs, plan.data.ys, cursor.order, settings.batch_size
    p, seed, first_step = settings.dropout, cursor.seed, cursor.first_step
    n = int(order.shape[0])
    hidden = len(weights) - 1
    for start in range(first, n, m_full):
        idx = order[start : min(start + m_full, n)]  # in bounds: Array API
        m = int(idx.shape[0])
        ws = plan.workspace(backend, m)
        x = backend.take_rows(xs, idx, out=ws.xbuf).T
        y = backend.take_rows(ys, idx, out=ws.ybuf).T
        masks = dropped = None
        if p:
            masks, dropped = ws.dropout_buffers()
            step = first_step + start // m_full
            for l in range(hidden):
                backend.dropout_mask(dropout.step_key(seed, step, l), p, masks[l])
        feedforward(backend, weights, biases, x, ws.activations, kinds, masks, dropped)
        total = total + backpropagate(
            backend, cost, weights, x, y, ws.activations, ws.deltas, ws.scratch, kinds, masks,
        )
        inputs = [x, *(ws.activations if dropped is None else dropped)[:hidden]]
        apply_deltas(backend, settings, params, ws.deltas, inputs, ws.grad_w, ws.grad_b, m)
    return total
