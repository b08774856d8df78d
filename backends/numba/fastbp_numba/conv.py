"""Compiled convolution and max-pooling operations for the ``cpu-jit`` device.

The same operations as :class:`fastbp.devices.conv_ops.ConvOps` on ``(C, H, W, m)`` maps, each
one pass of compiled loops (the sample index innermost, where the arrays are contiguous) instead
of a NumPy call per window offset. Compiled on first use and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def gather_columns(a: np.ndarray, out: np.ndarray) -> None:
    """``out[c, p, q, i, j, s] = a[c, i + p, j + q, s]``."""
    C, kh, kw, oh, ow, m = out.shape
    for c in range(C):
        for p in range(kh):
            for q in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        for s in range(m):
                            out[c, p, q, i, j, s] = a[c, i + p, j + q, s]


@numba.njit(cache=True, nogil=True)
def fold_columns(cols: np.ndarray, out: np.ndarray) -> None:
    """``out[c, y, x, s] = Σ_{p+i=y, q+j=x} cols[c, p, q, i, j, s]`` (col2im)."""
    C, kh, kw, oh, ow, m = cols.shape
    out[...] = 0.0
    for c in range(C):
        for p in range(kh):
            for q in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        for s in range(m):
                            out[c, i + p, j + q, s] += cols[c, p, q, i, j, s]


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
    """``δ`` written at each window's maximum, 0 elsewhere."""
    F, PH, PW, m = delta.shape
    out[...] = 0.0
    for f in range(F):
        for i in range(PH):
            for j in range(PW):
                for s in range(m):
                    k = index[f, i, j, s]
                    out[f, i * ph + k // pw, j * pw + k % pw, s] = delta[f, i, j, s]
