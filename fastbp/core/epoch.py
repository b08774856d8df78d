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


def run_epoch(backend: Ops, plan: EpochPlan) -> Any:
    """One epoch of ``plan``: the backend's own (``backend.sgd_epoch``) when it has one, else
    :func:`sgd_epoch`. Returns the summed cost, possibly as a device scalar."""
    total = backend.sgd_epoch(plan)
    return sgd_epoch(backend, plan) if total is None else total


def sgd_epoch(backend: Ops, plan: EpochPlan, first: int = 0, total: Any = 0.0) -> Any:
    """One pass of mini-batch SGD over ``plan.order[first:]``; returns ``total`` plus the summed
    cost of the batches (a backend may pass a device scalar as ``total`` to keep it there).

    Each step: gather the batch, feedforward, BP1 and BP2, then the update with BP3 and BP4
    folded in: ``W^l ← (1 − ηλ/n) W^l − (η/m) δ^l (a^{l-1})ᵀ``, ``b^l ← b^l − (η/m) Σ_j δ^l_j``;
    with momentum or L1 the step goes through the velocities
    (:meth:`~fastbp.core.ops.Ops.velocity_update`), and with dropout each hidden layer draws its
    mask first (:mod:`fastbp.core.dropout`).
    """
    weights, biases, cost = plan.weights, plan.biases, plan.cost
    n = int(plan.order.shape[0])
    hidden = len(weights) - 1
    for start in range(first, n, plan.batch_size):
        idx = plan.order[start : min(start + plan.batch_size, n)]  # in bounds: Array API
        m = int(idx.shape[0])
        ws = plan.workspace(backend, m)
        x = backend.take_rows(plan.xs, idx, out=ws.xbuf).T
        y = backend.take_rows(plan.ys, idx, out=ws.ybuf).T
        masks = dropped = None
        if plan.dropout:
            masks, dropped = ws.dropout_buffers()
            step = plan.first_step + start // plan.batch_size
            for l in range(hidden):
                backend.dropout_mask(dropout.step_key(plan.seed, step, l), plan.dropout,
                                     masks[l])
        feedforward(backend, weights, biases, x, ws.activations, plan.kinds, masks, dropped)
        total = total + backpropagate(
            backend, cost, weights, x, y, ws.activations, ws.deltas, ws.scratch, plan.kinds,
            masks,
        )
        alpha = plan.eta / m
        inputs = [x, *(ws.activations if dropped is None else dropped)[:hidden]]
        if plan.velocities is None:
            for l, (w, b) in enumerate(zip(weights, biases)):
                backend.sgd_weights(w, ws.deltas[l], inputs[l], alpha, plan.decay, ws.grad_w[l])
                backend.sgd_biases(b, ws.deltas[l], alpha, ws.grad_b[l])
            continue
        v_w, v_b = plan.velocities[: hidden + 1], plan.velocities[hidden + 1 :]
        for l, (w, b) in enumerate(zip(weights, biases)):
            backend.matmul_nt(ws.deltas[l], inputs[l], out=ws.grad_w[l])  # BP4
            backend.velocity_update(w, ws.grad_w[l], v_w[l], alpha, plan.mu, plan.l2_step,
                                    plan.l1_step)
            backend.sum_columns(ws.deltas[l], out=ws.grad_b[l])  # BP3
            backend.velocity_update(b, ws.grad_b[l], v_b[l], alpha, plan.mu)
    return total
