"""The oracle of chapter 6: convolution and max-pooling one sample and one pixel at a time.

No columns, no GEMM, no folding: each output pixel is the sum of its filter times its receptive
field, each pooled value the largest of its window (the first one on ties), and backward walks
the same loops in reverse. float64 NumPy, slow and obviously right; the matrix form of
:mod:`fastbp.core.layers` is held to it. Maps are ``(C, H, W)`` per sample, filters
``(F, C, kh, kw)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import neurons


def conv_sample(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``z[f, i, j] = Σ_{c,p,q} w[f, c, p, q] x[c, i + p, j + q]`` (valid convolution, as
    Theano's ``conv2d`` with flipped filters, i.e. a correlation)."""
    f, _, kh, kw = w.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    z = np.zeros((f, oh, ow))
    for k in range(f):
        for i in range(oh):
            for j in range(ow):
                z[k, i, j] = np.sum(w[k] * x[:, i : i + kh, j : j + kw])
    return z


def pool_sample(z: np.ndarray, ph: int, pw: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pooled, where)``: the max of every whole ``ph × pw`` window and the ``(row, col)`` of
    its first maximum in ``z``; rows and columns past the last whole window are ignored."""
    f, rows, cols = z.shape[0], z.shape[1] // ph, z.shape[2] // pw
    pooled = np.zeros((f, rows, cols))
    where = np.zeros((f, rows, cols, 2), dtype=np.int64)
    for k in range(f):
        for i in range(rows):
            for j in range(cols):
                best = (i * ph, j * pw)
                for p in range(ph):
                    for q in range(pw):
                        if z[k, i * ph + p, j * pw + q] > z[k, best[0], best[1]]:
                            best = (i * ph + p, j * pw + q)
                pooled[k, i, j] = z[k, best[0], best[1]]
                where[k, i, j] = best
    return pooled, where


def unpool_sample(delta: np.ndarray, where: np.ndarray, conv_shape: tuple[int, int]
                  ) -> np.ndarray:
    """``δ^z``: each pooled error put back at its window's maximum, 0 elsewhere."""
    out = np.zeros((delta.shape[0], *conv_shape))
    for k in range(delta.shape[0]):
        for i in range(delta.shape[1]):
            for j in range(delta.shape[2]):
                r, c = where[k, i, j]
                out[k, r, c] += delta[k, i, j]
    return out


def conv_back_sample(w: np.ndarray, x: np.ndarray, delta_z: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(∂C/∂w, ∂C/∂x)`` of one sample: ``∂w[f,c,p,q] = Σ_{i,j} δ[f,i,j] x[c,i+p,j+q]``,
    ``∂x[c,i+p,j+q] += Σ_f δ[f,i,j] w[f,c,p,q]``."""
    _, _, kh, kw = w.shape
    nabla_w, nabla_x = np.zeros_like(w), np.zeros_like(x)
    for k in range(delta_z.shape[0]):
        for i in range(delta_z.shape[1]):
            for j in range(delta_z.shape[2]):
                d = delta_z[k, i, j]
                nabla_w[k] += d * x[:, i : i + kh, j : j + kw]
                nabla_x[:, i : i + kh, j : j + kw] += d * w[k]
    return nabla_w, nabla_x




def backprop_sample(layers: Sequence[Any], params: Sequence[tuple[np.ndarray, np.ndarray]],
                    x: np.ndarray, y: int) -> tuple[float, list]:
    """``(C_x, [(∂C_x/∂W, ∂C_x/∂b), ...])`` of one sample ``x`` (flat) with label ``y`` for a
    stack of :mod:`fastbp.core.layers` kinds ending in softmax, ``C_x = −ln a_y`` (no dropout).
    Parameters in the layers' shapes (a conv layer's ``W_f`` ``(F, C·kh·kw)``)."""
    a = np.asarray(x, dtype=np.float64)
    trace: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    for layer, (w, b) in zip(layers, params):
        if hasattr(layer, "filter_shape"):
            w4 = w.reshape(layer.filter_shape)
            a_in = a.reshape(layer.in_shape)
            pooled, maxima = pool_sample(conv_sample(w4, a_in), *layer.poolsize)
            z = pooled + b.reshape(-1, 1, 1)
            trace.append((a_in, z, maxima))
            a = neurons.apply(layer.activation, z.reshape(z.shape[0], -1)).reshape(z.shape)
        else:
            a_in = a.reshape(-1, 1)
            z = w @ a_in + b
            trace.append((a_in, z, None))
            a = neurons.apply(layer.activation, z)
    onehot = np.zeros_like(a)
    onehot[y] = 1.0
    cost = -float(np.log(a[y, 0]))
    delta, grads = a - onehot, []  # BP1 of softmax with the log-likelihood
    for l in range(len(layers) - 1, -1, -1):
        layer, (w, _), (a_in, z, where) = layers[l], params[l], trace[l]
        if l < len(layers) - 1:  # ∂C/∂a arrives; δ = that ⊙ f'(z)
            flat = neurons.prime(layer.activation, z.reshape(z.shape[0], -1)).reshape(z.shape)
            delta = delta.reshape(z.shape) * flat
        if where is None:
            grads.append((delta @ a_in.T, delta.copy()))
            delta = w.T @ delta
            continue
        delta_z = unpool_sample(delta, where, layer.conv_shape)
        nabla_w, nabla_x = conv_back_sample(w.reshape(layer.filter_shape), a_in, delta_z)
        grads.append((nabla_w.reshape(w.shape), delta.sum(axis=(1, 2)).reshape(-1, 1)))
        delta = nabla_x
    return cost, grads[::-1]


def backprop_loop(layers: Sequence[Any], params: Sequence[tuple[np.ndarray, np.ndarray]],
                  X: np.ndarray, labels: np.ndarray) -> tuple[float, list]:
    """The summed cost and gradients over the columns of ``X`` ``(n_in, m)``, one sample at a
    time."""
    total, summed = 0.0, [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    for s in range(X.shape[1]):
        cost, grads = backprop_sample(layers, params, X[:, s], int(labels[s]))
        total += cost
        summed = [(sw + gw, sb + gb) for (sw, sb), (gw, gb) in zip(summed, grads)]
    return total, summed
