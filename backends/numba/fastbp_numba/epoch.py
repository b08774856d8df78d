"""The ``cpu-jit`` device's whole epoch: every mini-batch of an epoch in one compiled call.

An epoch gathers each mini-batch's rows in the epoch's order and runs one SGD step on them
(feedforward, BP1, BP2, then BP3 and BP4 folded into the update); the steps are the compiled
building blocks of :mod:`fastbp_numba.kernels` (the plain rule) and of
:mod:`fastbp_numba.techniques` (momentum, L1 and dropout). Each strategy of the planner
(:mod:`fastbp_numba.planning`) has its epoch here, plain and with chapter 3's techniques:

- :func:`sgd_epoch` / :func:`sgd_epoch_tech`: ``one-thread``, gathering each batch itself;
- :func:`sgd_rows` / :func:`sgd_rows_tech`: ``overlap`` and ``blas-threads``, on rows gathered
  ahead in the epoch's order (:func:`fastbp.devices.cpu.prefetch_chunks`);
- :func:`sgd_epoch_half` / :func:`sgd_epoch_half_tech`: ``two-threads``, each thread taking half
  of every step;
- :func:`sgd_epoch_blocks`, :func:`sgd_rows_blocks`, :func:`sgd_epoch_half_blocks`: the plain
  rule's epochs of large batches of a narrow network, in blocks of rows
  (:func:`fastbp_numba.kernels.block_sums`).

Which one runs, with which buffers and GEMM library, is decided in Python by
:meth:`fastbp_numba.backend.NumbaBackend.sgd_epoch`. Every epoch runs with the thread's
flush-to-zero mode on, restored on return (:func:`fastbp_numba.neurons.flush`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import (
    FTZ_DAZ,
    apply_sums,
    apply_two_sums,
    barrier,
    bias_step,
    block_sums,
    deltas_of,
    forward,
    gather,
    get_mxcsr,
    set_mxcsr,
    step,
    update_columns,
)
from .neurons import JIT
from .techniques import bias_velocity, penalties_and_step
from .techniques import deltas_of as deltas_of_tech
from .techniques import forward as forward_tech
from .techniques import step as step_tech


# -- the plain rule -------------------------------------------------------------------------
@njit(**JIT)
def sgd_epoch(weights, biases, xs, ys, order, m, eta, decay, spec, xbuf, ybuf, acts, deltas,
              scal, small, blas):
    """Every mini-batch of ``order`` in turn: gather its rows, then
    :func:`fastbp_numba.kernels.step`.

    Returns the summed cost of the epoch's batches (each before its update). Runs with this
    thread's flush-to-zero mode on (restored on return), as XLA does:
    see :func:`fastbp_numba.neurons.flush`.
    """
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, m):
        r = min(m, n - start)
        gather(xs, order, start, r, xbuf)
        gather(ys, order, start, r, ybuf)
        total += step(weights, biases, xbuf, ybuf, r, eta, decay, spec, acts, deltas, scal,
                      small, blas)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_rows(weights, biases, x, y, rows, m, eta, decay, spec, acts, deltas, scal, small, blas,
             total):
    """:func:`fastbp_numba.kernels.step` on consecutive mini-batches of ``m`` rows of ``x``/``y``
    (rows already gathered in the epoch's order: :func:`fastbp.devices.cpu.prefetch_chunks`), the
    first ``rows`` rows. Returns ``total`` plus their summed cost (added in the order
    :func:`sgd_epoch` adds it); flush-to-zero as in :func:`sgd_epoch`."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    for start in range(0, rows, m):
        r = min(m, rows - start)
        total += step(weights, biases, x[start:], y[start:], r, eta, decay, spec, acts, deltas,
                      scal, small, blas)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_epoch_half(t, weights, biases, xs, ys, order, m, eta, decay, spec, xbuf, acts, deltas,
                   half, scal, small, blas, sync):
    """Thread ``t``'s part (0 or 1) of one epoch that two threads run at once, each calling BLAS
    on one thread; the two meet at a barrier twice a step. Returns its rows' summed cost.

    1. Rows ``[0, h)`` or ``[h, r)`` of the batch (``h = ⌈m/2⌉``): gather, feedforward, BP1,
       BP2 (``half``: this thread's views of the rows of ``xbuf``, ``ybuf``, ``acts``,
       ``deltas``).
    2. BP3, BP4 and SGD split by units: the columns (inputs) of each ``W`` and the entries of
       each ``b`` in this thread's half, over the whole batch:
       ``W[:, c] ← decay·W[:, c] − α Δᵀ A^{l-1}[:, c]``, ``b_j ← b_j − α Σ_i Δ_ij``.

    Both halves gather and compute side by side, and no thread waits inside a BLAS call.
    """
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    cost, kinds = spec[0], spec[1]
    n = order.shape[0]
    h = (m + 1) // 2
    x, y, acts_t, deltas_t = half
    total = 0.0
    meetings = 0
    for start in range(0, n, m):
        r = min(m, n - start)
        lo = 0 if t == 0 else h
        rows = min(h, r) if t == 0 else r - h
        if rows > 0:
            gather(xs, order, start + lo, rows, x)
            gather(ys, order, start + lo, rows, y)
            forward(weights, biases, x, rows, acts_t, deltas_t, kinds, scal, small, blas)
            total += deltas_of(weights, y, rows, acts_t, deltas_t, cost, kinds, scal, small,
                               blas)
        meetings += 1
        barrier(sync, 2, meetings)  # every Δ of the batch is known
        alpha = eta / r
        for l in range(len(weights)):
            w, b, d = weights[l], biases[l], deltas[l]
            nl, k = w.shape
            c0, c1 = (0, k // 2) if t == 0 else (k // 2, k)
            a_prev = xbuf if l == 0 else acts[l - 1]
            if c1 > c0:
                update_columns(w, d, a_prev, r, c0, c1, alpha, decay, scal, blas)
            j0, j1 = (0, nl // 2) if t == 0 else (nl // 2, nl)
            bias_step(b, d, r, j0, j1, alpha)
        meetings += 1
        barrier(sync, 2, meetings)  # every parameter is updated
    set_mxcsr(saved)
    return total


# -- large batches in blocks of rows (kernels.block_sums) -------------------------------------
@njit(**JIT)
def apply_all(weights, biases, sums, alpha, decay):
    """Every layer's SGD step from a batch's sums (:func:`fastbp_numba.kernels.apply_sums`)."""
    grads, gbs = sums
    for l in range(len(weights)):
        apply_sums(weights[l], biases[l], grads[l], gbs[l], alpha, decay)


@njit(**JIT)
def sgd_epoch_blocks(weights, biases, xs, ys, order, m, eta, decay, spec, xbuf, ybuf, acts,
                     deltas, scal, small, blas, block, sums):
    """:func:`sgd_epoch` for batches of more than ``block`` rows: each batch in blocks of
    ``block`` rows, each gathered and run through :func:`fastbp_numba.kernels.block_sums`
    while its rows are in the cache, then one step from the batch's ``sums``."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, m):
        r = min(m, n - start)
        for b0 in range(0, r, block):
            rows = min(block, r - b0)
            gather(xs, order, start + b0, rows, xbuf)
            gather(ys, order, start + b0, rows, ybuf)
            total += block_sums(weights, biases, xbuf, ybuf, rows, b0 == 0, acts, deltas, sums,
                                spec, scal, small, blas)
        apply_all(weights, biases, sums, eta / r, decay)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_rows_blocks(weights, biases, x, y, rows, m, eta, decay, spec, acts, deltas, scal, small,
                    blas, block, sums, total):
    """:func:`sgd_rows` for batches of more than ``block`` rows, in blocks as
    :func:`sgd_epoch_blocks` takes them."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    for start in range(0, rows, m):
        r = min(m, rows - start)
        for b0 in range(0, r, block):
            total += block_sums(weights, biases, x[start + b0:], y[start + b0:],
                                min(block, r - b0), b0 == 0, acts, deltas, sums, spec, scal,
                                small, blas)
        apply_all(weights, biases, sums, eta / r, decay)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_epoch_half_blocks(t, weights, biases, xs, ys, order, m, eta, decay, spec, half, scal,
                          small, blas, sync, block, sums):
    """:func:`sgd_epoch_half` for halves of more than ``block`` rows: each thread runs its rows
    of a batch in blocks (:func:`fastbp_numba.kernels.block_sums`, into its own of the pair
    ``sums``), then, after a barrier, the step from both threads' sums added, split by units
    as there (:func:`fastbp_numba.kernels.apply_two_sums`)."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    n = order.shape[0]
    h = (m + 1) // 2
    x, y, acts_t, deltas_t = half
    grads, gbs = sums[t]
    total = 0.0
    meetings = 0
    for start in range(0, n, m):
        r = min(m, n - start)
        lo = 0 if t == 0 else h
        rows = min(h, r) if t == 0 else r - h
        for b0 in range(0, rows, block):
            part = min(block, rows - b0)
            gather(xs, order, start + lo + b0, part, x)
            gather(ys, order, start + lo + b0, part, y)
            total += block_sums(weights, biases, x, y, part, b0 == 0, acts_t, deltas_t,
                                sums[t], spec, scal, small, blas)
        if rows <= 0:  # a last batch of one row leaves this thread none: its sums are 0
            for l in range(len(weights)):
                grads[l][:] = 0.0
                gbs[l][:] = 0.0
        meetings += 1
        barrier(sync, 2, meetings)  # both threads' sums are known
        alpha = eta / r
        for l in range(len(weights)):
            nl, k = weights[l].shape
            c0, c1 = (0, k // 2) if t == 0 else (k // 2, k)
            j0, j1 = (0, nl // 2) if t == 0 else (nl // 2, nl)
            apply_two_sums(weights[l], biases[l], sums[0][0][l], sums[1][0][l], sums[0][1][l],
                           sums[1][1][l], alpha, decay, c0, c1, j0, j1)
        meetings += 1
        barrier(sync, 2, meetings)  # every parameter is updated
    set_mxcsr(saved)
    return total


# -- with momentum, L1 or dropout (fastbp_numba.techniques) ---------------------------------
@njit(**JIT)
def sgd_epoch_tech(weights, biases, xs, ys, order, m, eta, decay, spec, tech, first_step, xbuf,
                   ybuf, acts, deltas, extra, scal, small, blas):
    """Every mini-batch of ``order`` in turn (mini-batch ``s`` is number ``first_step + s`` of
    its epoch): gather its rows, then :func:`fastbp_numba.techniques.step`. Returns the summed
    cost; flush-to-zero as :func:`sgd_epoch`."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, m):
        r = min(m, n - start)
        gather(xs, order, start, r, xbuf)
        gather(ys, order, start, r, ybuf)
        total += step_tech(weights, biases, xbuf, ybuf, r, eta, decay, spec, tech,
                           first_step + start // m, acts, deltas, extra, scal, small, blas)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_rows_tech(weights, biases, x, y, rows, m, eta, decay, spec, tech, first_step, acts,
                  deltas, extra, scal, small, blas, total):
    """:func:`fastbp_numba.techniques.step` on consecutive mini-batches of ``m`` rows of
    ``x``/``y`` (rows gathered ahead in the epoch's order; the first is mini-batch
    ``first_step``), the first ``rows`` rows. Returns ``total`` plus their summed cost."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    for start in range(0, rows, m):
        r = min(m, rows - start)
        total += step_tech(weights, biases, x[start:], y[start:], r, eta, decay, spec, tech,
                           first_step + start // m, acts, deltas, extra, scal, small, blas)
    set_mxcsr(saved)
    return total


@njit(**JIT)
def sgd_epoch_half_tech(t, weights, biases, xs, ys, order, m, eta, decay, spec, tech,
                        first_step, xbuf, acts, deltas, extra, half, half_extra, scal, small,
                        blas, sync):
    """Thread ``t``'s part of an epoch two threads run at once
    (:func:`sgd_epoch_half`) with the plan's techniques. Each thread draws the masks of its own
    rows, with the column index of the hash the sample's place in the whole batch; the update,
    split by units, reads the whole batch's ``Δ`` and ``Ã``.

    ``half``: this thread's views of the rows of ``xbuf``, ``ybuf``, ``acts``, ``deltas``;
    ``half_extra``: of the masks and ``Ã``."""
    saved = get_mxcsr()
    set_mxcsr(saved | np.uint32(FTZ_DAZ))
    cost, kinds = spec[0], spec[1]
    velocity, drop = tech[3], tech[4]
    _, dropped, velocities = extra
    n = order.shape[0]
    h = (m + 1) // 2
    x, y, acts_t, deltas_t = half
    masks_t, dropped_t = half_extra
    layers = len(weights)
    total = 0.0
    meetings = 0
    for start in range(0, n, m):
        r = min(m, n - start)
        step_no = first_step + start // m
        lo = 0 if t == 0 else h
        rows = min(h, r) if t == 0 else r - h
        if rows > 0:
            gather(xs, order, start + lo, rows, x)
            gather(ys, order, start + lo, rows, y)
            forward_tech(weights, biases, x, rows, lo, r, acts_t, deltas_t, kinds, tech,
                         step_no, masks_t, dropped_t, scal, small, blas)
            total += deltas_of_tech(weights, y, rows, acts_t, deltas_t, cost, kinds, drop,
                                    masks_t, scal, small, blas)
        meetings += 1
        barrier(sync, 2, meetings)  # every Δ and Ã of the batch is known
        alpha = eta / r
        for l in range(layers):
            w, b, d = weights[l], biases[l], deltas[l]
            nl, k = w.shape
            c0, c1 = (0, k // 2) if t == 0 else (k // 2, k)
            j0, j1 = (0, nl // 2) if t == 0 else (nl // 2, nl)
            a_prev = xbuf if l == 0 else (dropped[l - 1] if drop else acts[l - 1])
            if velocity:
                vw, vb = velocities[l], velocities[layers + l]
                if c1 > c0:
                    update_columns(vw, d, a_prev, r, c0, c1, alpha, tech[0], scal, blas)
                    penalties_and_step(w, vw, c0, c1, tech[1], tech[2])
                bias_velocity(b, vb, d, r, j0, j1, alpha, tech[0])
            else:
                if c1 > c0:
                    update_columns(w, d, a_prev, r, c0, c1, alpha, decay, scal, blas)
                bias_step(b, d, r, j0, j1, alpha)
        meetings += 1
        barrier(sync, 2, meetings)  # every parameter is updated
    set_mxcsr(saved)
    return total
