"""Numba-compiled kernels: one whole epoch of mini-batch SGD without returning to Python.

Layout: everything is sample-major, one sample per **row** (the transpose of the book's columns,
so a mini-batch is a C-contiguous block of rows and the last, shorter batch is a prefix of the
same buffers). With ``A^l`` ``(m, n_l)``, ``W^l`` ``(n_l, n_{l-1})`` and ``b^l`` ``(n_l, 1)``:

- feedforward: ``Z^l = A^{l-1} (W^l)ᵀ``, ``A^l = σ(Z^l + b^l)`` (bias and σ fused in one pass)
- BP1: ``Δ^L = ∇_a C ⊙ A^L ⊙ (1 − A^L)`` (quadratic) or ``Δ^L = A^L − Y`` (cross-entropy)
- BP2: ``Δ^l = (Δ^{l+1} W^{l+1}) ⊙ A^l ⊙ (1 − A^l)``
- BP3 + BP4 folded into the SGD step, one GEMM with ``β = decay``:
  ``W^l ← decay · W^l − (η/m) (Δ^l)ᵀ A^{l-1}``, ``b^l ← b^l − (η/m) Σ_rows Δ^l``

The GEMMs call the BLAS SciPy ships (the one Numba's own ``np.dot`` uses) through Numba's
``numba_xxgemm`` helper, with ``alpha``/``beta`` and no temporary; below ``SMALL`` multiply-adds
plain compiled loops are faster than a BLAS call, and run instead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.np.linalg import ensure_blas

ensure_blas()

_N = ord("N")
_T = ord("T")
QUADRATIC = 0
CROSS_ENTROPY = 1
FLAGS = {"reassoc", "contract"}  # vectorised sums and FMAs; NaN and inf keep their meaning


def _xxgemm(dtype: types.Type) -> types.ExternalFunction:
    """``numba_xxgemm(kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb, *beta, *c, ldc)``."""
    ptr = types.CPointer(dtype)
    sig = types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                     ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp)
    return types.ExternalFunction("numba_xxgemm", sig)


def gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal):  # noqa: ANN001
    """Column-major BLAS GEMM: ``C ← α op(A) op(B) + β C`` (``scal`` holds α and β)."""
    raise NotImplementedError  # only the compiled overload below runs


@overload(gemm, jit_options={"cache": True})
def _gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal):  # noqa: ANN001
    fn = _xxgemm(a.dtype)
    kind = ord("s") if a.dtype == types.float32 else ord("d")

    def impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal):  # noqa: ANN001
        scal[0] = alpha
        scal[1] = beta
        fn(kind, transa, transb, m, n, k, scal[0:].ctypes, a.ctypes, lda, b.ctypes, ldb,
           scal[1:].ctypes, c.ctypes, ldc)

    return impl


# -- the pieces of one step ---------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=FLAGS)
def gather(src, order, start, r, out):  # noqa: ANN001
    """``out[i] = src[order[start + i]]`` for ``i < r`` (a mini-batch of rows)."""
    k = src.shape[1]
    for i in range(r):
        row = order[start + i]
        for j in range(k):
            out[i, j] = src[row, j]


@njit(cache=True, nogil=True, fastmath=FLAGS)
def bias_sigmoid(z, b, r):  # noqa: ANN001
    """In place on the first ``r`` rows: ``A = σ(Z + b) = 1 / (1 + e^{−(Z + b)})``."""
    n = z.shape[1]
    one = z.dtype.type(1.0)
    for i in range(r):
        for j in range(n):
            z[i, j] = one / (one + math.exp(-(z[i, j] + b[j, 0])))


@njit(cache=True, nogil=True, fastmath=FLAGS)
def linear(w, a_prev, r, z, scal, small):  # noqa: ANN001
    """``Z[:r] = A^{l-1}[:r] Wᵀ`` (``W`` ``(n, k)``, ``A^{l-1}`` ``(m, k)``, ``Z`` ``(m, n)``)."""
    n, k = w.shape
    if r * n * k <= small:
        zero = z.dtype.type(0.0)
        for i in range(r):
            for j in range(n):
                s = zero
                for p in range(k):
                    s += a_prev[i, p] * w[j, p]
                z[i, j] = s
    else:
        # column-major view: Zᵀ (n × r) = W (k × n)ᵀ · A^{l-1}ᵀ (k × r)
        gemm(_T, _N, n, r, k, 1.0, w, k, a_prev, k, 0.0, z, n, scal)


@njit(cache=True, nogil=True, fastmath=FLAGS)
def back(w_next, d_next, r, d, scal, small):  # noqa: ANN001
    """``Δ^l[:r] = Δ^{l+1}[:r] W^{l+1}`` (the product of BP2, before the hadamard)."""
    n_next, n = w_next.shape
    if r * n * n_next <= small:
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
        gemm(_N, _N, n, r, n_next, 1.0, w_next, n, d_next, n_next, 0.0, d, n, scal)


@njit(cache=True, nogil=True, fastmath=FLAGS)
def mul_sigmoid_prime(d, a, r):  # noqa: ANN001
    """BP2's hadamard, in place: ``Δ ← Δ ⊙ σ'(Z) = Δ ⊙ A ⊙ (1 − A)``."""
    one = d.dtype.type(1.0)
    for i in range(r):
        for j in range(d.shape[1]):
            x = a[i, j]
            d[i, j] *= x * (one - x)


@njit(cache=True, nogil=True, fastmath=FLAGS)
def output_error(a, y, r, d, cost):  # noqa: ANN001
    """BP1 into ``d``; returns the summed cost of the ``r`` rows.

    Quadratic: ``Δ = (A − Y) ⊙ A ⊙ (1 − A)``, ``C = ½ Σ (A − Y)²``. Cross-entropy (one-hot
    ``Y``): ``Δ = A − Y``, ``C = −Σ ln max(1 − |A − Y|, tiny)``.
    """
    one = d.dtype.type(1.0)
    total = 0.0
    if cost == QUADRATIC:
        for i in range(r):
            for j in range(d.shape[1]):
                x = a[i, j]
                e = x - y[i, j]
                total += e * e
                d[i, j] = e * x * (one - x)
        return 0.5 * total
    tiny = np.finfo(d.dtype).tiny
    for i in range(r):
        for j in range(d.shape[1]):
            e = a[i, j] - y[i, j]
            d[i, j] = e
            total -= math.log(max(one - abs(e), tiny))
    return total


@njit(cache=True, nogil=True, fastmath=FLAGS)
def sgd_update(w, b, d, a_prev, r, alpha, decay, scal, small):  # noqa: ANN001
    """BP3 and BP4 folded into the step: ``W ← decay·W − α Δᵀ A^{l-1}``, ``b ← b − α Σ_i Δ_i``."""
    n, k = w.shape
    if r * n * k <= small:
        for j in range(n):
            for p in range(k):
                w[j, p] *= decay
        for i in range(r):
            for j in range(n):
                c = alpha * d[i, j]
                for p in range(k):
                    w[j, p] -= c * a_prev[i, p]
    else:
        # column-major: Wᵀ (k × n) ← decay·Wᵀ − α A^{l-1}ᵀ (k × r) · Δ (r × n)
        gemm(_N, _T, k, n, r, -alpha, a_prev, k, d, n, decay, w, k, scal)
    for j in range(n):
        s = 0.0
        for i in range(r):
            s += d[i, j]
        b[j, 0] -= alpha * s


# -- whole passes ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=FLAGS)
def forward(weights, biases, x, r, acts, scal, small):  # noqa: ANN001
    """Feedforward of the first ``r`` rows of ``x``; ``acts[l]`` receives ``A^{l+2}``."""
    a_prev = x
    for l in range(len(weights)):
        z = acts[l]
        linear(weights[l], a_prev, r, z, scal, small)
        bias_sigmoid(z, biases[l], r)
        a_prev = z


@njit(cache=True, nogil=True, fastmath=FLAGS)
def deltas_of(weights, y, r, acts, deltas, cost, scal, small):  # noqa: ANN001
    """BP1 then BP2 down to layer 2; ``deltas[l]`` receives ``Δ^{l+2}``. Returns the cost."""
    top = len(weights) - 1
    c = output_error(acts[top], y, r, deltas[top], cost)
    for l in range(top - 1, -1, -1):
        back(weights[l + 1], deltas[l + 1], r, deltas[l], scal, small)
        mul_sigmoid_prime(deltas[l], acts[l], r)
    return c


@njit(cache=True, nogil=True, fastmath=FLAGS)
def sgd_epoch(weights, biases, xs, ys, order, m, eta, decay, cost, xbuf, ybuf, acts, deltas,
              scal, small):  # noqa: ANN001
    """Every mini-batch of ``order`` in turn: gather, feedforward, BP1, BP2, update.

    Returns the summed cost of the epoch's batches (each before its update).
    """
    n = order.shape[0]
    total = 0.0
    for start in range(0, n, m):
        r = min(m, n - start)
        gather(xs, order, start, r, xbuf)
        gather(ys, order, start, r, ybuf)
        forward(weights, biases, xbuf, r, acts, scal, small)
        total += deltas_of(weights, ybuf, r, acts, deltas, cost, scal, small)
        alpha = eta / r
        for l in range(len(weights)):
            a_prev = xbuf if l == 0 else acts[l - 1]
            sgd_update(weights[l], biases[l], deltas[l], a_prev, r, alpha, decay, scal, small)
    return total


@njit(cache=True, nogil=True, fastmath=FLAGS)
def backprop(weights, biases, x, y, cost, acts, deltas, grad_w, grad_b, scal, small):  # noqa: ANN001
    """The gradient summed over the rows of ``x``: ``∂C/∂b^l = Σ_i Δ^l_i`` (BP3),
    ``∂C/∂W^l = (Δ^l)ᵀ A^{l-1}`` (BP4), with the same kernels as :func:`sgd_epoch`."""
    r = x.shape[0]
    forward(weights, biases, x, r, acts, scal, small)
    c = deltas_of(weights, y, r, acts, deltas, cost, scal, small)
    for l in range(len(weights)):
        a_prev = x if l == 0 else acts[l - 1]
        gw, gb = grad_w[l], grad_b[l]
        gw[:] = 0.0
        gb[:] = 0.0
        # the update with W = 0, decay = 0 and α = −1 leaves +Δᵀ A^{l-1} and +Σ_i Δ_i
        sgd_update(gw, gb, deltas[l], a_prev, r, -1.0, 0.0, scal, small)
    return c
