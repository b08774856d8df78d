"""Numba-compiled building blocks of one SGD step: gather, the products, the folded update,
the feedforward, BP1 and BP2, one step, and the compiled gradient. The whole epochs that loop
over them are in :mod:`fastbp_numba.epoch`.

These functions call one another inside compiled code, and Numba caches each module's compiled
functions together; the neurons' elementwise passes live in :mod:`fastbp_numba.neurons`, the
GEMM call, the flush-to-zero register and the two threads' barrier in
:mod:`fastbp_numba.machine`.

Layout: everything is sample-major, one sample per **row** (the transpose of the book's columns,
so a mini-batch is a C-contiguous block of rows and the last, shorter batch is a prefix of the
same buffers). With ``A^l`` ``(m, n_l)``, ``W^l`` ``(n_l, n_{l-1})`` and ``b^l`` ``(n_l, 1)``:

- feedforward: ``Z^l = A^{l-1} (W^l)ᵀ + b^l`` (the bias enters as the GEMM's ``C`` with ``β = 1``),
  ``A^l = f(Z^l)``: σ (float32: a vectorised ``e^x`` accurate to about 1 ulp), tanh, relu, or
  softmax along each row (one sample), shifted by the row's largest entry
- BP1: ``Δ^L = ∇_a C ⊙ A^L ⊙ (1 − A^L)`` (quadratic) or ``Δ^L = A^L − Y`` (cross-entropy, and
  the log-likelihood of a softmax output)
- BP2: ``Δ^l = (Δ^{l+1} W^{l+1}) ⊙ f'(Z^l)``, ``f'`` from ``A^l``: ``A(1 − A)``, ``1 − A²``,
  ``[A > 0]``

- BP3 + BP4 folded into the SGD step, one GEMM with ``β = decay``:
  ``W^l ← decay · W^l − (η/m) (Δ^l)ᵀ A^{l-1}``, ``b^l ← b^l − (η/m) Σ_rows Δ^l``
- a large batch of a narrow network in blocks of rows (:func:`block_sums`): each block's
  feedforward, BP1, BP2 and its BP3 and BP4 added to the batch's sums
  ``G^l = Σ_blocks (Δ^l)ᵀ A^{l-1}``, ``g^l = Σ_rows Δ^l`` while its rows are in the cache, then
  ``W^l ← decay · W^l − (η/m) G^l``, ``b^l ← b^l − (η/m) g^l`` (:func:`apply_sums`)

``spec`` is the network's ``(cost code, kinds)``: the cost (:data:`QUADRATIC`,
:data:`CROSS_ENTROPY`, :data:`LOG_LIKELIHOOD`) and an int64 array with each layer's neuron
(:data:`SIGMOID`, :data:`TANH`, :data:`RELU`, :data:`SOFTMAX`; :mod:`fastbp_numba.neurons`).

The GEMMs call CBLAS through the function pointer :func:`fastbp.devices.cpu.find_cblas` finds
(MKL when installed, else NumPy's OpenBLAS), or, when it finds none, the BLAS SciPy ships through
Numba's ``numba_xxgemm`` helper; always with ``alpha``/``beta`` and no temporary. Small batches
run compiled loops instead (``small``, a pair of row counts): the feedforward's products up to
``small[0]`` rows (:func:`dots`: BLAS packs all of ``W`` for a product whose other side is a
few rows), BP2's and the update's up to ``small[1]`` (a matrix-vector product, bound by reading
``W`` from cache, where a BLAS call only adds its overhead and, for a large ``W``, wakes BLAS
threads for a few microseconds of work).

A plan with momentum, L1 or dropout runs the twins of these steps in
:mod:`fastbp_numba.techniques` (the velocities, the dropout masks); the functions here are the
plain rule alone.

Every epoch runs with the thread's flush-to-zero mode on, and errors below the smallest normal
float are flushed to 0 (:func:`flush`): a saturated sigmoid layer otherwise fills ``Δ`` with
subnormals, which x86 multiplies through a slow microcode path.
"""

from __future__ import annotations

from numba import njit

from .machine import (  # noqa: F401 - the machine-level pieces, re-exported
    _N,
    _T,
    BARRIER_SPINS,
    FTZ_DAZ,
    atomic_add,
    atomic_load,
    barrier,
    gemm,
    get_mxcsr,
    set_mxcsr,
)
from .neurons import (  # noqa: F401 - the kernels' elementwise passes, re-exported
    CHUNK,
    CROSS_ENTROPY,
    FLAGS,
    JIT,
    KIND_CODES,
    LOG_LIKELIHOOD,
    QUADRATIC,
    RELU,
    SIGMOID,
    SOFTMAX,
    TANH,
    activate,
    flush,
    mul_activation_prime,
    mul_sigmoid_prime,
    output_error,
    sigmoid,
    softmax_rows,
)


# -- the pieces of one step ---------------------------------------------------------------
@njit(**JIT)
def gather(src, order, start, r, out):
    """``out[i] = src[order[start + i]]`` for ``i < r`` (a mini-batch of rows).

    Four rows at a time, their columns interleaved: four independent streams of reads keep more
    cache misses in flight than one row after another (MNIST rows in a random order, one core of
    the developers' Xeon: 2.2–2.3× faster at batches 1000 and 10000)."""
    k = src.shape[1]
    i = 0
    while i + 4 <= r:
        s0, s1 = src[order[start + i]], src[order[start + i + 1]]
        s2, s3 = src[order[start + i + 2]], src[order[start + i + 3]]
        o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
        for j in range(k):
            o0[j] = s0[j]
            o1[j] = s1[j]
            o2[j] = s2[j]
            o3[j] = s3[j]
        i += 4
    for t in range(i, r):
        row = order[start + t]
        for j in range(k):
            out[t, j] = src[row, j]


@njit(**JIT)
def dots(w, b, a_prev, r, z):
    """``Z[:r] = A^{l-1}[:r] Wᵀ + bᵀ`` as dot products ``z_ij = b_j + Σ_p a_ip w_jp`` (both
    operands' rows are contiguous along ``p``): four neurons by two rows at a time, so each
    loaded entry of ``W`` and ``A`` serves several sums, and each block of four rows of ``W``
    is read from memory once a step. At few rows this beats a BLAS call, which packs all of
    ``W`` first (``[784,30,10]`` at batch 10, one core of an AMD EPYC: 7 µs against 19 µs).

    Every sum runs over ``p`` in the same order for the same ``r``, so a batch's numbers do
    not depend on anything else."""
    n, k = w.shape
    zero = z.dtype.type(0.0)
    j = 0
    while j + 4 <= n:
        i = 0
        while i + 2 <= r:
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            for p in range(k):
                a0, a1 = a_prev[i, p], a_prev[i + 1, p]
                w0, w1, w2, w3 = w[j, p], w[j + 1, p], w[j + 2, p], w[j + 3, p]
                s00 += a0 * w0
                s01 += a0 * w1
                s02 += a0 * w2
                s03 += a0 * w3
                s10 += a1 * w0
                s11 += a1 * w1
                s12 += a1 * w2
                s13 += a1 * w3
            z[i, j], z[i, j + 1] = s00 + b[j, 0], s01 + b[j + 1, 0]
            z[i, j + 2], z[i, j + 3] = s02 + b[j + 2, 0], s03 + b[j + 3, 0]
            z[i + 1, j], z[i + 1, j + 1] = s10 + b[j, 0], s11 + b[j + 1, 0]
            z[i + 1, j + 2], z[i + 1, j + 3] = s12 + b[j + 2, 0], s13 + b[j + 3, 0]
            i += 2
        if i < r:  # an odd row
            s00 = s01 = s02 = s03 = zero
            for p in range(k):
                a0 = a_prev[i, p]
                s00 += a0 * w[j, p]
                s01 += a0 * w[j + 1, p]
                s02 += a0 * w[j + 2, p]
                s03 += a0 * w[j + 3, p]
            z[i, j], z[i, j + 1] = s00 + b[j, 0], s01 + b[j + 1, 0]
            z[i, j + 2], z[i, j + 3] = s02 + b[j + 2, 0], s03 + b[j + 3, 0]
        j += 4
    for q in range(j, n):  # the last neurons, fewer than four
        for i in range(r):
            s = zero
            for p in range(k):
                s += a_prev[i, p] * w[q, p]
            z[i, q] = s + b[q, 0]


@njit(**JIT)
def dots_fours(w, b, a_prev, r, z):
    """:func:`dots` for four rows or more: four rows by three neurons at a time, twelve sums in
    registers (:func:`dots`' eight wait on the FMA's latency; twelve keep both FMA units busy:
    whole epochs of ``[784,30,10]`` on one core of an AMD EPYC 1.05–1.12× as fast at batches
    10–100), the rows past the last four by :func:`dots`. Each sum runs over ``p`` as there."""
    n, k = w.shape
    zero = z.dtype.type(0.0)
    r4 = r - r % 4
    j = 0
    while j + 3 <= n:
        for i in range(0, r4, 4):
            s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = s30 = s31 = s32 = zero
            for p in range(k):
                a0, a1, a2, a3 = a_prev[i, p], a_prev[i + 1, p], a_prev[i + 2, p], a_prev[i + 3, p]
                w0, w1, w2 = w[j, p], w[j + 1, p], w[j + 2, p]
                s00 += a0 * w0
                s01 += a0 * w1
                s02 += a0 * w2
                s10 += a1 * w0
                s11 += a1 * w1
                s12 += a1 * w2
                s20 += a2 * w0
                s21 += a2 * w1
                s22 += a2 * w2
                s30 += a3 * w0
                s31 += a3 * w1
                s32 += a3 * w2
            b0, b1, b2 = b[j, 0], b[j + 1, 0], b[j + 2, 0]
            z[i, j], z[i, j + 1], z[i, j + 2] = s00 + b0, s01 + b1, s02 + b2
            z[i + 1, j], z[i + 1, j + 1], z[i + 1, j + 2] = s10 + b0, s11 + b1, s12 + b2
            z[i + 2, j], z[i + 2, j + 1], z[i + 2, j + 2] = s20 + b0, s21 + b1, s22 + b2
            z[i + 3, j], z[i + 3, j + 1], z[i + 3, j + 2] = s30 + b0, s31 + b1, s32 + b2
        j += 3
    for q in range(j, n):  # the last neuron or two
        for i in range(0, r4, 4):
            s00 = s10 = s20 = s30 = zero
            for p in range(k):
                wq = w[q, p]
                s00 += a_prev[i, p] * wq
                s10 += a_prev[i + 1, p] * wq
                s20 += a_prev[i + 2, p] * wq
                s30 += a_prev[i + 3, p] * wq
            z[i, q], z[i + 1, q] = s00 + b[q, 0], s10 + b[q, 0]
            z[i + 2, q], z[i + 3, q] = s20 + b[q, 0], s30 + b[q, 0]
    if r4 < r:
        dots(w, b, a_prev[r4:], r - r4, z[r4:])


THIN, LONG = 32, 256  # a layer of at most THIN neurons over at least LONG inputs is thin


@njit(**JIT)
def linear(w, b, a_prev, r, z, scal, small, blas):
    """``Z[:r] = A^{l-1}[:r] Wᵀ + bᵀ`` with ``W`` ``(n, k)``, ``A`` ``(m, k)``, ``Z`` ``(m, n)``:
    :func:`dots` (:func:`dots_fours` from four rows) for at most ``small[0]`` rows, or four
    times as many where the layer is thin (:data:`THIN` neurons, :data:`LONG` inputs: packing
    ``W`` is then most of a BLAS call), else one GEMM."""
    n, k = w.shape
    if r <= small[0] or (r <= 4 * small[0] and n <= THIN and k >= LONG):
        if r < 4:
            dots(w, b, a_prev, r, z)
        else:
            dots_fours(w, b, a_prev, r, z)
    else:
        for i in range(r):
            for j in range(n):
                z[i, j] = b[j, 0]
        # column-major view: Zᵀ (n × r) = W (k × n)ᵀ · A^{l-1}ᵀ (k × r) + Zᵀ
        gemm(_T, _N, n, r, k, 1.0, w, k, a_prev, k, 1.0, z, n, scal, blas)


@njit(**JIT)
def back(w_next, d_next, r, d, scal, small, blas):
    """``Δ^l[:r] = Δ^{l+1}[:r] W^{l+1}`` (the product of BP2, before the hadamard)."""
    n_next, n = w_next.shape
    if r <= small[1]:
        zero = d.dtype.type(0.0)
        for i in range(r):
            for j in range(n):
                d[i, j] = zero
            for q in range(n_next):
                c = d_next[i, q]
                for j in range(n):
                    d[i, j] += c * w_next[q, j]
    else:
        # column-major: Δᵀ (n × r) = W^{l+1}ᵀ (n × n_next) · Δ^{l+1}ᵀ (n_next × r)
        gemm(_N, _N, n, r, n_next, 1.0, w_next, n, d_next, n_next, 0.0, d, n, scal, blas)


@njit(**JIT)
def scaled_update(x, d, a_prev, r, alpha, beta, scal, small, blas):
    """BP4 folded into ``X ← β X − α Δᵀ A^{l-1}``: ``X`` is ``W`` with ``β = decay`` (SGD), or
    its velocity with ``β = μ`` (momentum). Loops for at most ``small[1]`` rows, else one GEMM."""
    n, k = x.shape
    scal[2] = alpha  # α and β in the arrays' dtype, so the loops stay in that precision
    scal[3] = beta
    a, bet = scal[2], scal[3]
    if r <= small[1]:
        if beta != 1.0:
            for j in range(n):
                for p in range(k):
                    x[j, p] *= bet
        for j in range(n):
            for i in range(r):
                c = a * d[i, j]
                for p in range(k):
                    x[j, p] -= c * a_prev[i, p]
    else:
        update_columns(x, d, a_prev, r, 0, k, alpha, beta, scal, blas)  # every column


@njit(**JIT)
def column_sums(d, r):
    """BP3's ``Σ_i Δ_i`` over the ``r`` rows, row by row into ``Δ``'s first row (contiguous
    reads; ``Δ`` is not needed any more)."""
    n = d.shape[1]
    for i in range(1, r):
        for j in range(n):
            d[0, j] += d[i, j]


@njit(**JIT)
def sgd_update(w, b, d, a_prev, r, alpha, decay, scal, small, blas):
    """BP3 and BP4 folded into the step: ``W ← decay·W − α Δᵀ A^{l-1}``, ``b ← b − α Σ_i Δ_i``.

    Overwrites the first row of ``Δ`` (with the column sums)."""
    scaled_update(w, d, a_prev, r, alpha, decay, scal, small, blas)
    column_sums(d, r)
    a = scal[2]  # α in the arrays' dtype
    for j in range(w.shape[0]):
        b[j, 0] -= a * d[0, j]


# -- whole passes ---------------------------------------------------------------------------
@njit(**JIT)
def forward(weights, biases, x, r, acts, scratch, kinds, scal, small, blas):
    """Feedforward of the first ``r`` rows of ``x``; ``acts[l]`` receives ``A^{l+2}``
    (``scratch``: buffers shaped like ``acts``, free during the feedforward)."""
    a_prev = x
    for l in range(len(weights)):
        z = acts[l]
        linear(weights[l], biases[l], a_prev, r, z, scal, small, blas)
        activate(z, r, kinds[l], scratch[l])
        a_prev = z


@njit(**JIT)
def deltas_of(weights, y, r, acts, deltas, cost, kinds, scal, small, blas):
    """BP1 then BP2 down to layer 2; ``deltas[l]`` receives ``Δ^{l+2}``. Returns the cost."""
    top = len(weights) - 1
    c = output_error(acts[top], y, r, deltas[top], cost)
    for l in range(top - 1, -1, -1):
        back(weights[l + 1], deltas[l + 1], r, deltas[l], scal, small, blas)
        mul_activation_prime(deltas[l], acts[l], r, kinds[l])
    return c


@njit(**JIT)
def step(weights, biases, x, y, r, eta, decay, spec, acts, deltas, scal, small, blas):
    """One SGD step on the first ``r`` rows of ``x``/``y``: feedforward, BP1, BP2, then BP3 and
    BP4 folded into the update. Returns the batch's summed cost (before the update).

    ``spec``: the network's ``(cost code, kinds)`` (see the module)."""
    cost, kinds = spec[0], spec[1]
    forward(weights, biases, x, r, acts, deltas, kinds, scal, small, blas)
    total = deltas_of(weights, y, r, acts, deltas, cost, kinds, scal, small, blas)
    alpha = eta / r
    for l in range(len(weights)):
        a_prev = x if l == 0 else acts[l - 1]
        sgd_update(weights[l], biases[l], deltas[l], a_prev, r, alpha, decay, scal, small, blas)
    return total


@njit(**JIT)
def update_columns(w, d, a_prev, r, c0, c1, alpha, decay, scal, blas):
    """Columns ``c0:c1`` of BP4 folded into SGD: ``W[:, c0:c1] ← decay·W[:, c0:c1] − α Δᵀ
    A^{l-1}[:, c0:c1]`` (one GEMM on the column block, over the ``r`` rows of the batch); a
    velocity with ``decay = μ`` likewise."""
    n, k = w.shape
    # column-major: rows c0:c1 of Wᵀ (k × n) ← decay·Wᵀ − α (A^{l-1}ᵀ)[c0:c1] (· × r) · Δ (r × n)
    gemm(_N, _T, c1 - c0, n, r, -alpha, a_prev[0:, c0:], k, d, n, decay, w[0:, c0:], k, scal,
         blas)


@njit(**JIT)
def bias_step(b, d, r, j0, j1, alpha):
    """BP3 folded into SGD for entries ``j0:j1``: ``b_j ← b_j − α Σ_i Δ_ij`` (``Δ`` is read
    only: the other thread may be reading it too)."""
    a = b.dtype.type(alpha)
    for j in range(j0, j1):
        s = d.dtype.type(0.0)
        for i in range(r):
            s += d[i, j]
        b[j, 0] -= a * s


# -- a large batch in blocks of rows ---------------------------------------------------------
@njit(**JIT)
def block_sums(weights, biases, x, y, rows, first, acts, deltas, sums, spec, scal, small, blas):
    """Feedforward, BP1 and BP2 of ``rows`` rows (a block of a large batch), and their BP3 and
    BP4 added to the batch's sums: ``G^l ← [G^l +] (Δ^l)ᵀ A^{l-1}``, ``g^l ← [g^l +] Σ_i Δ^l_i``
    (``first``: the batch's first block, which starts the sums). Returns the block's cost.

    A block's rows stay in the cache from its gather to its last product, where a whole batch of
    thousands of rows is read from memory by each pass (``sums``: ``(G, g)``, one pair per
    layer, :func:`apply_sums` applies them)."""
    cost, kinds = spec[0], spec[1]
    forward(weights, biases, x, rows, acts, deltas, kinds, scal, small, blas)
    c = deltas_of(weights, y, rows, acts, deltas, cost, kinds, scal, small, blas)
    grads, gbs = sums
    beta = 0.0 if first else 1.0
    for l in range(len(weights)):
        n, k = weights[l].shape
        a_prev = x if l == 0 else acts[l - 1]
        d, gb = deltas[l], gbs[l]
        # column-major: Gᵀ (k × n) ← β Gᵀ + A^{l-1}ᵀ (k × rows) · Δ (rows × n)
        gemm(_N, _T, k, n, rows, 1.0, a_prev, k, d, n, beta, grads[l], k, scal, blas)
        if first:
            for j in range(n):
                gb[j] = 0.0
        for i in range(rows):
            for j in range(n):
                gb[j] += d[i, j]
    return c


@njit(**JIT)
def apply_sums(w, b, g, gb, alpha, decay):
    """The SGD step from a batch's sums (:func:`block_sums`): ``W ← decay·W − α G``,
    ``b ← b − α g``."""
    n, k = w.shape
    a = w.dtype.type(alpha)
    dec = w.dtype.type(decay)
    for j in range(n):
        for c in range(k):
            w[j, c] = dec * w[j, c] - a * g[j, c]
        b[j, 0] -= a * gb[j]


@njit(**JIT)
def apply_two_sums(w, b, g0, g1, gb0, gb1, alpha, decay, c0, c1, j0, j1):
    """:func:`apply_sums` of the sum of two threads' sums, on columns ``c0:c1`` of ``W`` and
    entries ``j0:j1`` of ``b`` (a thread's share): ``W ← decay·W − α (G₀ + G₁)``,
    ``b ← b − α (g₀ + g₁)``."""
    n = w.shape[0]
    a = w.dtype.type(alpha)
    dec = w.dtype.type(decay)
    for j in range(n):
        for c in range(c0, c1):
            w[j, c] = dec * w[j, c] - a * (g0[j, c] + g1[j, c])
    for j in range(j0, j1):
        b[j, 0] -= a * (gb0[j] + gb1[j])


@njit(**JIT)
def backprop(weights, biases, x, y, spec, acts, deltas, grad_w, grad_b, scal, small, blas):
    """The gradient summed over the rows of ``x``: ``∂C/∂b^l = Σ_i Δ^l_i`` (BP3),
    ``∂C/∂W^l = (Δ^l)ᵀ A^{l-1}`` (BP4), with the same kernels as
    :func:`fastbp_numba.epoch.sgd_epoch`."""
    r = x.shape[0]
    cost, kinds = spec[0], spec[1]
    forward(weights, biases, x, r, acts, deltas, kinds, scal, small, blas)
    c = deltas_of(weights, y, r, acts, deltas, cost, kinds, scal, small, blas)
    for l in range(len(weights)):
        a_prev = x if l == 0 else acts[l - 1]
        gw, gb = grad_w[l], grad_b[l]
        gw[:] = 0.0
        gb[:] = 0.0
        # the update with W = 0, decay = 0 and α = −1 leaves +Δᵀ A^{l-1} and +Σ_i Δ_i
        sgd_update(gw, gb, deltas[l], a_prev, r, -1.0, 0.0, scal, small, blas)
    return c
