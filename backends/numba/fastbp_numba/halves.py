"""cpu-jit's backprop of a layer stack on two cores: the mini-batch in two halves at once.

A convolutional network's products are skinny (conv1: 20 filters × 25 inputs), so BLAS's
own threads, splitting each product, gain little on two cores (the book's two-conv net at batch
100: 1.22× one thread). Here each core back-propagates half of the batch's columns through the
whole stack, BLAS on one thread each, with its own work buffers (a twin of the stack), and the
two halves' sums are added: ``∂C/∂W = Σ_{j<h} + Σ_{j≥h}``, ``C`` likewise, ``h = ⌈m/2⌉``. The
same sums in a fixed order: the same numbers on every run of a machine with two cores; they
differ from the one-matrix backprop by rounding only.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import numpy as np

from fastbp.core.layers.stack import Stack
from fastbp.devices.cpu import cores, half_helper, library_threads, one_thread

MIN_BATCH = 40  # smaller ones run as one matrix (the book's net, 2-core Xeon: even at 32)

_twins: weakref.WeakKeyDictionary[Stack, Stack] = weakref.WeakKeyDictionary()


def takes(m: int) -> bool:
    """Whether a batch of ``m`` runs in halves here: two cores, BLAS allowed two threads."""
    return m >= MIN_BATCH and cores() >= 2 and library_threads() >= 2


def twin(stack: Stack) -> Stack:
    """The second half's stack: the same layers, work buffers of its own (made once)."""
    other = _twins.get(stack)
    if other is None:
        other = _twins[stack] = Stack(stack.backend, stack.layers)
    return other


def backprop(stack: Stack, params: Any, x: np.ndarray, y: np.ndarray,
             masks: Sequence[np.ndarray | None] | None) -> tuple[Any, list]:
    """:meth:`Stack.backprop` of columns ``[0, h)`` here and ``[h, m)`` on the helper thread
    (:func:`fastbp.devices.cpu.half_helper`), then the second half's sums added to the
    first's."""
    m = int(x.shape[-1])
    h = (m + 1) // 2
    second = twin(stack)
    low = None if masks is None else [None if d is None else d[:, :h] for d in masks]
    high = None if masks is None else [None if d is None else d[:, h:] for d in masks]
    got: dict[str, Any] = {}

    def run_high() -> None:
        got["high"] = second.backprop_here(params, x[:, h:], y[:, h:], high)

    with one_thread(), half_helper() as start:
        wait = start(run_high)
        try:
            cost, grads = stack.backprop_here(params, x[:, :h], y[:, :h], low)
        finally:
            wait()
    cost_high, grads_high = got["high"]
    for (w, b), (w2, b2) in zip(grads, grads_high):
        np.add(w, w2, out=w)
        np.add(b, b2, out=b)
    return cost + cost_high, grads
