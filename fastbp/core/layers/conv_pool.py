"""network3's ``ConvPoolLayer``: a convolution, max-pooling, then the bias and the neuron.

Maps are ``(C, H, W, m)``. With ``F`` filters of ``C × kh × kw`` in ``W_f`` ``(F, C·kh·kw)``:

- ``z = W_f · cols(a^{l-1})``, one GEMM over the whole mini-batch (``cols``: every receptive field
  of every sample a column, :meth:`~fastbp.core.ops.Ops.gather_columns`), read as
  ``(F, oh, ow, m)`` with ``oh = H − kh + 1``, ``ow = W − kw + 1``;
- ``p = maxpool(z)`` over ``ph × pw`` windows (the border past the last whole window ignored),
  keeping each window's argmax;
- ``a^l = f(p + b)``, ``b`` one bias per filter.

Backward from ``∂C/∂a^l``: ``δ^p = ∂C/∂a^l ⊙ f'``; ``∂C/∂b = Σ`` of ``δ^p`` over positions and
samples; ``δ^z`` is ``δ^p`` routed to each window's maximum (0 elsewhere);
``∂C/∂W_f = δ^z · cols(a^{l-1})ᵀ`` (summed over the batch by the product);
``∂C/∂a^{l-1} = fold(W_fᵀ δ^z)``, the transpose of the gathering (col2im).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConfigError
from ..ops import Array, Ops
from .base import Workspace, activate, check_activation, times_prime


def _ints(name: str, value: Any, n: int) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or any(v < 1 for v in out):
        raise ConfigError(f"{name} must be {n} positive integers, got {value!r}")
    return out


class ConvPool:
    """``filter_shape`` ``(F, C, kh, kw)`` over images ``image_shape`` ``(C, H, W)``, then
    ``poolsize`` ``(ph, pw)`` max-pooling and ``activation``."""

    kind_name = "conv-pool"
    p_dropout = 0.0  # network3 drops nothing in a conv layer

    def __init__(self, filter_shape: Any, image_shape: Any, poolsize: Any = (2, 2),
                 activation: str = "sigmoid") -> None:
        self.filter_shape = _ints("filter_shape", filter_shape, 4)
        self.image_shape = _ints("image_shape", image_shape, 3)
        self.poolsize = _ints("poolsize", poolsize, 2)
        self.activation = check_activation(activation)
        f, c, kh, kw = self.filter_shape
        channels, h, w = self.image_shape
        if c != channels:
            raise ConfigError(f"filter_shape {self.filter_shape} has {c} input channels but "
                              f"image_shape {self.image_shape} has {channels}: make them equal")
        self.conv_shape = (h - kh + 1, w - kw + 1)
        ph, pw = self.poolsize
        if min(self.conv_shape) < 1 or self.conv_shape[0] < ph or self.conv_shape[1] < pw:
            raise ConfigError(f"filters {kh}x{kw} then pooling {ph}x{pw} do not fit images "
                              f"{h}x{w}: use smaller filters or pools")
        self.in_shape: tuple[int, ...] = self.image_shape
        self.out_shape: tuple[int, ...] = (f, self.conv_shape[0] // ph,
                                           self.conv_shape[1] // pw)

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``W_f`` ``(F, C·kh·kw)``, ``b`` ``(F, 1)``."""
        f, c, kh, kw = self.filter_shape
        return (f, c * kh * kw), (f, 1)

    def init(self, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """network3's draw: ``W ~ N(0, 1/n_out)`` with ``n_out = F·kh·kw // (ph·pw)`` (the
        book's Python 2 integer division), drawn ``(F, C, kh, kw)``; then ``b ~ N(0, 1)``."""
        f = self.filter_shape[0]
        n_out = f * int(np.prod(self.filter_shape[2:])) // int(np.prod(self.poolsize))
        w = rng.normal(loc=0.0, scale=np.sqrt(1.0 / n_out), size=self.filter_shape)
        b = rng.normal(loc=0.0, scale=1.0, size=(f,))
        return w.reshape(self.param_shapes()[0]).astype(np.float64), \
            b.reshape(-1, 1).astype(np.float64)

    def forward(self, backend: Ops, w: Array, b: Array, a: Array, ws: Workspace,
                mask: Array | None = None, train: bool = True) -> Array:
        """``a^l = f(maxpool(W_f · cols(a^{l-1})) + b)``, shaped ``(F, PH, PW, m)``."""
        (f, c, kh, kw), (oh, ow), (ph, pw) = self.filter_shape, self.conv_shape, self.poolsize
        m = int(a.shape[-1])
        a = backend.reshape(a, (*self.image_shape, m))
        cols = backend.gather_columns(a, kh, kw, ws.get("cols", (c, kh, kw, oh, ow, m)))
        z = backend.matmul(w, backend.reshape(cols, (c * kh * kw, oh * ow * m)),
                           out=ws.get("z", (f, oh * ow * m)))
        shape = (*self.out_shape, m)
        index = ws.get("index", shape, "int32")
        pooled = backend.max_pool(backend.reshape(z, (f, oh, ow, m)), ph, pw,
                                  ws.get("pooled", shape), index)
        out = activate(backend, backend.reshape(pooled, (f, -1)), b, self.activation)
        ws.saved.update(cols=cols, index=index, output=out)
        return backend.reshape(out, shape)

    def backward(self, backend: Ops, w: Array, ws: Workspace, error: Array,
                 below: bool = True) -> tuple[Array, Array, Array | None]:
        """``∂C/∂W_f = δ^z cols(a^{l-1})ᵀ``, ``∂C/∂b = Σ δ^p``, ``∂C/∂a^{l-1} =
        fold(W_fᵀ δ^z)``."""
        (f, c, kh, kw), (oh, ow), (ph, pw) = self.filter_shape, self.conv_shape, self.poolsize
        m = int(error.shape[-1])
        out = ws.saved["output"]
        delta = times_prime(backend, backend.reshape(error, (f, -1)), out, self.activation,
                            ws.get("scratch", tuple(out.shape)))
        nabla_b = backend.sum_columns(delta, out=ws.get("nabla_b", (f, 1)))
        delta_z = backend.max_pool_back(backend.reshape(delta, (*self.out_shape, m)),
                                        ws.saved["index"], ph, pw,
                                        backend.reshape(ws.get("z", (f, oh * ow * m)),
                                                        (f, oh, ow, m)))  # z is spent
        delta_z = backend.reshape(delta_z, (f, oh * ow * m))
        cols = backend.reshape(ws.saved["cols"], (c * kh * kw, oh * ow * m))
        nabla_w = backend.matmul_nt(delta_z, cols, out=ws.get("nabla_w", tuple(w.shape)))
        if not below:
            return nabla_w, nabla_b, None
        dcols = backend.matmul_tn(w, delta_z, out=cols)  # cols is spent: its buffer is reused
        grad = backend.fold_columns(backend.reshape(dcols, (c, kh, kw, oh, ow, m)),
                                    ws.get("below", (*self.image_shape, m)))
        return nabla_w, nabla_b, grad
