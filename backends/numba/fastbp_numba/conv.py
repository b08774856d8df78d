"""Compiled loops for the ``cpu-jit`` device's layer operations (:mod:`fastbp_numba.layer_ops`).

The convolution and max-pooling operations of :class:`fastbp.devices.conv_ops.ConvOps` on
``(C, H, W, m)`` maps, each one pass of compiled loops (the sample index innermost, where the
arrays are contiguous) instead of a NumPy call per window offset; the ReLU neuron's two passes
and the SGD step, one pass each instead of two or three NumPy calls. Compiled on first use and
cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def gather_columns(a: np.ndarray, out: np.ndarray) -> None:
    """``out[c, p, q, i, j, s] = a[c, i + p, j + q, s]``: for each ``(c, p, q, i)`` the
    ``(ow, m)`` block of ``out`` is the contiguous run ``a[c, i + p, q : q + ow, :]``, copied as
    one flat loop (long even when ``m`` is small)."""
    C, kh, kw, oh, ow, m = out.shape
    n = ow * m
    rows = a.reshape(a.shape[0], a.shape[1], a.shape[2] * m)
    dst = out.reshape(C, kh, kw, oh, n)
    for c in range(C):
        for p in range(kh):
            for q in range(kw):
                for i in range(oh):
                    src = rows[c, i + p, q * m : q * m + n]
                    row = dst[c, p, q, i]
                    for t in range(n):
                        row[t] = src[t]


@numba.njit(cache=True, nogil=True)
def fold_columns(cols: np.ndarray, out: np.ndarray) -> None:
    """``out[c, y, x, s] = Σ_{p+i=y, q+j=x} cols[c, p, q, i, j, s]`` (col2im): each ``(ow, m)``
    block of ``cols`` added to the contiguous run ``out[c, i + p, q : q + ow, :]``."""
    C, kh, kw, oh, ow, m = cols.shape
    n = ow * m
    rows = out.reshape(out.shape[0], out.shape[1], out.shape[2] * m)
    src = cols.reshape(C, kh, kw, oh, n)
    out[...] = 0.0
    for c in range(C):
        for p in range(kh):
            for q in range(kw):
                for i in range(oh):
                    dst = rows[c, i + p, q * m : q * m + n]
                    block = src[c, p, q, i]
                    for t in range(n):
                        dst[t] += block[t]


@numba.njit(cache=True, nogil=True)
def max_pool(z: np.ndarray, ph: int, pw: int, out: np.ndarray, index: np.ndarray) -> None:
    """Window maxima into ``out``, the first maximum's ``p·pw + q`` into ``index``."""
    F, PH, PW, m = out.shape
    for f in range(F):
        for i in range(PH):
            for j in range(PW):
                for s in range(m):
                    out[f, i, j, s] = z[f, i * ph, j * pw, s]
                    index[f, i, j, s] = 0
                for p in range(ph):
                    for q in range(pw):
                        if p == 0 and q == 0:
                            continue
                        k = p * pw + q
                        for s in range(m):
                            v = z[f, i * ph + p, j * pw + q, s]
                            if v > out[f, i, j, s]:
                                out[f, i, j, s] = v
                                index[f, i, j, s] = k


@numba.njit(cache=True, nogil=True)
def max_pool_back(delta: np.ndarray, index: np.ndarray, ph: int, pw: int,
                  out: np.ndarray) -> None:
    """``δ`` written at each window's maximum, 0 elsewhere: one pass over ``out`` in memory
    order, each entry written once (``δ`` where ``index`` names its window position, else 0)."""
    F, PH, PW, m = delta.shape
    OH, OW = out.shape[1], out.shape[2]
    for f in range(F):
        for i in range(PH):
            for p in range(ph):
                y = i * ph + p
                for j in range(PW):
                    for q in range(pw):
                        x = j * pw + q
                        k = p * pw + q
                        for s in range(m):
                            out[f, y, x, s] = delta[f, i, j, s] if index[f, i, j, s] == k else 0.0
                for x in range(PW * pw, OW):  # the ignored border
                    for s in range(m):
                        out[f, y, x, s] = 0.0
        for y in range(PH * ph, OH):
            for x in range(OW):
                for s in range(m):
                    out[f, y, x, s] = 0.0


@numba.njit(cache=True, nogil=True)
def bias_relu(z: np.ndarray, b: np.ndarray) -> None:
    """In place, one pass: ``z ← max(z + b, 0)``, ``b`` one bias per row (NaN stays NaN)."""
    n, N = z.shape
    for r in range(n):
        br = b[r, 0]
        for t in range(N):
            v = z[r, t] + br
            z[r, t] = 0.0 if v < 0.0 else v


@numba.njit(cache=True, nogil=True)
def mul_relu_prime(x: np.ndarray, a: np.ndarray) -> None:
    """In place, one pass: ``x ← x ⊙ [a > 0]`` (``x·0`` where ``a ≤ 0``, so NaN stays NaN)."""
    n, N = x.shape
    for r in range(n):
        for t in range(N):
            x[r, t] = x[r, t] if a[r, t] > 0.0 else x[r, t] * 0.0


@numba.njit(cache=True, nogil=True)
def sgd_update(p: np.ndarray, grad: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> None:
    """In place on flat arrays, one pass: ``grad ← α g``, ``p ← β p − grad`` (``α``, ``β``
    0-d arrays of ``p``'s dtype, so every product rounds as NumPy's does)."""
    a = alpha[()]
    b = beta[()]
    for t in range(p.size):
        g = grad[t] * a
        grad[t] = g
        p[t] = p[t] * b - g
