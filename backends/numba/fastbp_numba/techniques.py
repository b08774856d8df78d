"""Chapter 3's techniques in the compiled epoch: momentum, L1 beside L2, and dropout.

The plain step (:func:`fastbp_numba.kernels.step`) is left as it is; these functions are its
twins for a plan that is not plain (their epochs: the ``*_tech`` ones of
:mod:`fastbp_numba.epoch`), with the same layout (one sample per
row) and the same pieces (gather, :func:`~fastbp_numba.kernels.linear`,
:func:`~fastbp_numba.kernels.back`, the neurons' passes).

- Dropout (:mod:`fastbp.core.dropout`): after ``A^l = f(Z^l)`` of a hidden layer the mask
  ``D^l`` is drawn from the counter hash (entry ``(c, j)`` of an ``r``-row batch, sample ``c``
  and neuron ``j``, is kept when ``mix(key + j·r + c) ≥ ⌊p·2^32⌋``, ``key`` the layer's
  :func:`step_key`) and the next layer reads ``Ã^l = A^l ⊙ D^l``; BP2 is
  ``Δ^l = ((Δ^{l+1} W^{l+1}) ⊙ f'(A^l)) ⊙ D^l`` (``f'`` from the unmasked ``A^l``) and BP4 takes
  ``Ã^{l-1}``. The output layer is never dropped.
- Momentum and L1 (the velocities ``V``): BP4 is one GEMM with ``β = μ`` straight into the
  velocity, ``V ← μ V − α Δᵀ A^{l-1}`` (``α = η/m``), then one elementwise pass
  ``V ← V − l2·W − l1·sgn W``, ``W ← W + V`` (``l2 = ηλ/n``, ``l1 = ηλ₁/n``); biases
  ``v_b ← μ v_b − α Σ_i Δ_i``, ``b ← b + v_b``. Without velocities the update is the plain
  folded one, ``W ← decay·W − α Δᵀ Ã^{l-1}``.

``tech`` is the tuple ``(mu, l2, l1, velocity, dropout, seed, threshold, keep)``: ``velocity``
whether the step goes through the velocities, ``dropout`` whether hidden layers are dropped,
``seed`` the epoch's mask seed, ``threshold`` ``⌊p·2^32⌋`` and ``keep`` ``1/(1 − p)``.
``extra`` is ``(masks, dropped, velocities)``: ``D^l`` and ``Ã^l`` (one buffer per layer, the
output layer's unused) and the velocities (every ``W^l``'s, then every ``b^l``'s); a part a plan
does not use holds placeholders that are never read or written.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import (
    back,
    column_sums,
    linear,
    scaled_update,
    sgd_update,
)
from .neurons import JIT, activate, mul_activation_prime, output_error

MASK32 = np.uint64(0xFFFFFFFF)
MIX1 = np.uint64(0x7FEB352D)  # lowbias32's multipliers
MIX2 = np.uint64(0x846CA68B)
S8, S15, S16 = np.uint64(8), np.uint64(15), np.uint64(16)


# -- the dropout masks ------------------------------------------------------------------------
@njit(inline="always", **JIT)
def mix32(x):
    """``lowbias32`` of the low 32 bits of ``x`` (uint64; the products wrap modulo ``2^32``)."""
    x = x & MASK32
    x ^= x >> S16
    x = (x * MIX1) & MASK32
    x ^= x >> S15
    x = (x * MIX2) & MASK32
    return x ^ (x >> S16)


@njit(**JIT)
def step_key(seed, step, layer):
    """``mix(seed ⊕ mix(step·2^8 + layer))``: the key of layer ``layer``'s mask in mini-batch
    ``step`` (:func:`fastbp.core.dropout.step_key`)."""
    inner = mix32((np.uint64(step) << S8) + np.uint64(layer))
    return mix32((np.uint64(seed) & MASK32) ^ inner)


@njit(**JIT)
def draw_dropout(key, threshold, keep, a, mask, dropped, rows, lo, r):
    """Rows ``i < rows`` (sample ``c = lo + i`` of an ``r``-row batch): ``D_ij = keep`` when
    ``mix(key + j·r + c) ≥ threshold``, else 0, and ``Ã_ij = A_ij · D_ij``."""
    n = a.shape[1]
    zero = a.dtype.type(0.0)
    k = a.dtype.type(keep)
    t = np.uint64(threshold)
    stride = np.uint64(r)
    for i in range(rows):
        base = key + np.uint64(lo + i)
        for j in range(n):
            d = k if mix32(base + np.uint64(j) * stride) >= t else zero
            mask[i, j] = d
            dropped[i, j] = a[i, j] * d


@njit(**JIT)
def apply_mask(d, mask, rows):
    """BP2's last factor, in place: ``Δ ← Δ ⊙ D`` on the first ``rows`` rows."""
    for i in range(rows):
        for j in range(d.shape[1]):
            d[i, j] *= mask[i, j]


@njit(**JIT)
def forward(weights, biases, x, rows, lo, r, acts, scratch, kinds, tech, step, masks, dropped,
            scal, small, blas):
    """Feedforward of ``rows`` rows (samples ``lo…`` of an ``r``-row batch) with each hidden
    layer dropped by the masks of mini-batch ``step``: ``acts[l]`` receives the unmasked
    ``A^{l+2}``, ``masks[l]`` and ``dropped[l]`` the mask and ``Ã^{l+2}`` the next layer reads."""
    drop, seed, threshold, keep = tech[4], tech[5], tech[6], tech[7]
    top = len(weights) - 1
    a_prev = x
    for l in range(len(weights)):
        z = acts[l]
        linear(weights[l], biases[l], a_prev, rows, z, scal, small, blas)
        activate(z, rows, kinds[l], scratch[l])
        if drop and l < top:
            draw_dropout(step_key(seed, step, l), threshold, keep, z, masks[l], dropped[l],
                         rows, lo, r)
            a_prev = dropped[l]
        else:
            a_prev = z


@njit(**JIT)
def deltas_of(weights, y, rows, acts, deltas, cost, kinds, drop, masks, scal, small, blas):
    """BP1, then BP2 down to layer 2 times each hidden layer's mask when ``drop``. Returns the
    cost of the ``rows`` rows."""
    top = len(weights) - 1
    c = output_error(acts[top], y, rows, deltas[top], cost)
    for l in range(top - 1, -1, -1):
        back(weights[l + 1], deltas[l + 1], rows, deltas[l], scal, small, blas)
        mul_activation_prime(deltas[l], acts[l], rows, kinds[l])
        if drop:
            apply_mask(deltas[l], masks[l], rows)
    return c


# -- the update through the velocities ----------------------------------------------------------
@njit(**JIT)
def penalties_and_step(w, v, c0, c1, l2, l1):
    """Columns ``c0:c1``: ``V ← V − l2·W − l1·sgn W``, then ``W ← W + V``."""
    n = w.shape[0]
    p2 = w.dtype.type(l2)
    p1 = w.dtype.type(l1)
    zero = w.dtype.type(0.0)
    if l1 != 0.0:
        for j in range(n):
            for c in range(c0, c1):
                x = w[j, c]
                s = p1 if x > zero else (-p1 if x < zero else zero)
                u = v[j, c] - p2 * x - s
                v[j, c] = u
                w[j, c] = x + u
    elif l2 != 0.0:
        for j in range(n):
            for c in range(c0, c1):
                x = w[j, c]
                u = v[j, c] - p2 * x
                v[j, c] = u
                w[j, c] = x + u
    else:
        for j in range(n):
            for c in range(c0, c1):
                w[j, c] += v[j, c]


@njit(**JIT)
def velocity_update(w, b, vw, vb, d, a_prev, r, alpha, tech, scal, small, blas):
    """BP3 and BP4 through the velocities: ``V ← μ V − α Δᵀ A^{l-1} − l2·W − l1·sgn W``,
    ``W ← W + V``; ``v_b ← μ v_b − α Σ_i Δ_i``, ``b ← b + v_b``.

    Overwrites the first row of ``Δ`` (with the column sums)."""
    mu, l2, l1 = tech[0], tech[1], tech[2]
    n, k = w.shape
    a = w.dtype.type(alpha)
    m = w.dtype.type(mu)
    scaled_update(vw, d, a_prev, r, alpha, mu, scal, small, blas)
    penalties_and_step(w, vw, 0, k, l2, l1)
    column_sums(d, r)
    for j in range(n):
        u = m * vb[j, 0] - a * d[0, j]
        vb[j, 0] = u
        b[j, 0] += u


@njit(**JIT)
def bias_velocity(b, vb, d, r, j0, j1, alpha, mu):
    """Entries ``j0:j1``: ``v_b ← μ v_b − α Σ_i Δ_ij``, ``b ← b + v_b`` (``Δ`` read only)."""
    a = b.dtype.type(alpha)
    m = b.dtype.type(mu)
    for j in range(j0, j1):
        s = d.dtype.type(0.0)
        for i in range(r):
            s += d[i, j]
        u = m * vb[j, 0] - a * s
        vb[j, 0] = u
        b[j, 0] += u


# -- one step -------------------------------------------------------------------------------------
@njit(**JIT)
def step(weights, biases, x, y, r, eta, decay, spec, tech, step_no, acts, deltas, extra, scal,
         small, blas):
    """One SGD step of mini-batch ``step_no`` on the first ``r`` rows of ``x``/``y`` with the
    plan's techniques (see the module). Returns the batch's summed cost (before the update)."""
    cost, kinds = spec[0], spec[1]
    velocity, drop = tech[3], tech[4]
    masks, dropped, velocities = extra
    forward(weights, biases, x, r, 0, r, acts, deltas, kinds, tech, step_no, masks, dropped,
            scal, small, blas)
    total = deltas_of(weights, y, r, acts, deltas, cost, kinds, drop, masks, scal, small, blas)
    alpha = eta / r
    layers = len(weights)
    for l in range(layers):
        a_prev = x if l == 0 else (dropped[l - 1] if drop else acts[l - 1])
        if velocity:
            velocity_update(weights[l], biases[l], velocities[l], velocities[layers + l],
                            deltas[l], a_prev, r, alpha, tech, scal, small, blas)
        else:
            sgd_update(weights[l], biases[l], deltas[l], a_prev, r, alpha, decay, scal, small,
                       blas)
    return total
