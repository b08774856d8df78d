"""The elementwise passes of the compiled epoch: each layer's neuron and the output error.

Sample-major, one sample per row (see :mod:`fastbp_numba.kernels`). ``kind`` codes a layer's
neuron (:data:`SIGMOID`, :data:`TANH`, :data:`RELU`, :data:`SOFTMAX`), ``cost`` the cost
(:data:`QUADRATIC`, :data:`CROSS_ENTROPY`, :data:`LOG_LIKELIHOOD`):

- ``A = f(Z)``: σ (float32: a vectorised ``e^x`` accurate to about 1 ulp), tanh, relu, or
  softmax along each row, shifted by the row's largest entry (:func:`activate`)
- BP1 (:func:`output_error`): ``Δ^L = (A − Y) ⊙ A(1 − A)`` (quadratic), ``A − Y`` (cross-entropy,
  and the log-likelihood of a softmax output)
- BP2's hadamard (:func:`mul_activation_prime`): ``f'`` from ``A``: ``A(1 − A)``, ``1 − A²``,
  ``[A > 0]``
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import overload

from .sources import stamp_numba_cache

stamp_numba_cache()  # before any function here or in the modules that import this one is cached

CHUNK = 4096  # elements the sigmoid works on at a time
QUADRATIC = 0
CROSS_ENTROPY = 1
LOG_LIKELIHOOD = 2
SIGMOID = 0
TANH = 1
RELU = 2
SOFTMAX = 3
KIND_CODES = {"sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "softmax": SOFTMAX}
FLAGS = {"reassoc", "contract"}  # vectorised sums and FMAs; NaN and inf keep their meaning
# NumPy's error model: x / 0 is inf (as in NumPy) rather than a check before every division,
# which would keep the loops from being vectorised
JIT: Any = {"cache": True, "nogil": True, "fastmath": FLAGS, "error_model": "numpy"}


def sigmoid(z, t):
    """In place on a flat array: ``z ← σ(z) = 1 / (1 + e^{−z})`` (``t``: scratch of z's size)."""
    raise NotImplementedError  # only the compiled overload below runs


@overload(sigmoid, jit_options=JIT)
def _sigmoid(z, t):
    if z.dtype != types.float32:

        def exact(z, t):
            one = z.dtype.type(1.0)
            for j in range(z.shape[0]):
                z[j] = one / (one + math.exp(-z[j]))

        return exact

    def vectorised(z, t):
        # e^x = 2^n · p(x − n ln 2), n = round(x / ln 2), p of degree 7 (Cephes' expf, 1 ulp);
        # x is clamped to ±87 so that every e^x and every σ stays a normal float32.
        f = np.float32
        one, lo, hi = f(1.0), f(-87.0), f(87.0)
        log2e, ln2_hi, ln2_lo = f(1.44269504088896341), f(0.693359375), f(-2.12194440e-4)
        p0, p1, p2 = f(1.9875691500e-4), f(1.3981999507e-3), f(8.3334519073e-3)
        p3, p4, p5 = f(4.1665795894e-2), f(1.6666665459e-1), f(5.0000001201e-1)
        zi, ti = z.view(np.int32), t.view(np.int32)
        for j in range(z.shape[0]):
            x = min(max(-z[j], lo), hi)
            n = np.floor(x * log2e + f(0.5))
            x = x - n * ln2_hi - n * ln2_lo
            z[j] = (((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5) * (x * x) + x + one
            ti[j] = np.int32(n) << 23
        for j in range(z.shape[0]):
            zi[j] += ti[j]  # p · 2^n: add n to the exponent bits
        for j in range(z.shape[0]):
            z[j] = one / (one + z[j])

    return vectorised


@njit(**JIT)
def mul_activation_prime(d, a, r, kind):
    """BP2's hadamard, in place: ``Δ ← Δ ⊙ f'(Z)`` with ``f'`` from ``A``: sigmoid
    ``A(1 − A)``, tanh ``1 − A²``, relu ``[A > 0]``."""
    if kind == SIGMOID:
        mul_sigmoid_prime(d, a, r)
        return
    one = d.dtype.type(1.0)
    zero = d.dtype.type(0.0)
    tiny = d.dtype.type(np.finfo(d.dtype).tiny)
    if kind == TANH:
        for i in range(r):
            for j in range(d.shape[1]):
                x = a[i, j]
                d[i, j] = flush(d[i, j] * (one - x * x), tiny)
    else:
        for i in range(r):
            for j in range(d.shape[1]):
                d[i, j] = d[i, j] if a[i, j] > zero else zero


@njit(**JIT)
def activate(z, r, kind, scratch):
    """In place on the first ``r`` rows: ``Z ← f(Z)`` for a layer of ``kind`` (``scratch``:
    a buffer of ``Z``'s shape, for the vectorised σ)."""
    if kind == SIGMOID:
        zf, tf = z.reshape(z.size), scratch.reshape(z.size)
        size = r * z.shape[1]
        for c in range(0, size, CHUNK):  # its passes stay in the L1 cache
            e = min(c + CHUNK, size)
            sigmoid(zf[c:e], tf[c:e])
    elif kind == TANH:
        for i in range(r):
            for j in range(z.shape[1]):
                z[i, j] = math.tanh(z[i, j])
    elif kind == RELU:
        zero = z.dtype.type(0.0)
        for i in range(r):
            for j in range(z.shape[1]):
                z[i, j] = max(z[i, j], zero)
    else:
        softmax_rows(z, r)


@njit(**JIT)
def softmax_rows(z, r):
    """In place: ``z_ij ← e^{z_ij − max_k z_ik} / Σ_k e^{z_ik − max_k z_ik}`` (one sample a
    row; the shift keeps every exponent ≤ 0)."""
    n = z.shape[1]
    for i in range(r):
        top = z[i, 0]
        for j in range(1, n):
            top = max(top, z[i, j])
        s = z.dtype.type(0.0)
        for j in range(n):
            e = math.exp(z[i, j] - top)
            z[i, j] = e
            s += e
        inv = z.dtype.type(1.0) / s
        for j in range(n):
            z[i, j] *= inv


@njit(**JIT)
def mul_sigmoid_prime(d, a, r):
    """BP2's hadamard, in place: ``Δ ← Δ ⊙ σ'(Z) = Δ ⊙ A ⊙ (1 − A)``.

    Entries below the smallest normal float become 0 (see :func:`flush`)."""
    one = d.dtype.type(1.0)
    tiny = d.dtype.type(np.finfo(d.dtype).tiny)
    for i in range(r):
        for j in range(d.shape[1]):
            x = a[i, j]
            d[i, j] = flush(d[i, j] * x * (one - x), tiny)


@njit(inline="always", **JIT)
def flush(v, tiny):
    """``v``, or 0 where ``|v|`` is subnormal.

    A saturated sigmoid layer makes ``σ'(z) = a(1 − a)`` tiny, and its errors ``δ`` subnormal;
    on x86 every multiply that touches a subnormal takes a slow microcode path (MNIST at batch 1
    trains 3× slower). Values below 1.2e-38 (float32) move no weight, so they become 0, as they
    would with the flush-to-zero mode that XLA runs in."""
    return v if abs(v) >= tiny else v * 0


@njit(**JIT)
def output_error(a, y, r, d, cost):
    """BP1 into ``d``; returns the summed cost of the ``r`` rows.

    Quadratic: ``Δ = (A − Y) ⊙ A ⊙ (1 − A)``, ``C = ½ Σ (A − Y)²``. Cross-entropy (one-hot
    ``Y``): ``Δ = A − Y``, ``C = −Σ ln max(1 − |A − Y|, tiny)``. Log-likelihood of a softmax
    output: ``Δ = A − Y``, ``C = −Σ Y ln max(A, tiny)``.
    """
    one = d.dtype.type(1.0)
    tiny = d.dtype.type(np.finfo(d.dtype).tiny)
    total = 0.0
    if cost == QUADRATIC:
        for i in range(r):
            for j in range(d.shape[1]):
                x = a[i, j]
                e = x - y[i, j]
                total += e * e
                d[i, j] = flush(e * x * (one - x), tiny)
        return 0.5 * total
    if cost == LOG_LIKELIHOOD:
        for i in range(r):
            for j in range(d.shape[1]):
                x = a[i, j]
                t = y[i, j]
                d[i, j] = x - t
                if t != 0:
                    total -= t * math.log(max(x, tiny))
        return total
    for i in range(r):
        for j in range(d.shape[1]):
            e = a[i, j] - y[i, j]
            d[i, j] = e
            total -= math.log(max(one - abs(e), tiny))
    return total
