"""The device operations of convolution and max-pooling, written once against ``self.xp``.

A feature map batch is ``(C, H, W, m)``: channel, row, column, then one sample per position of
the last axis (so ``(C·H·W, m)`` is the fully connected layers' one-sample-per-column form).
Every operation works with basic slicing only (no per-sample loop, no scatter), so NumPy, CuPy
and any Array API namespace run the same code; a device overrides the ones it can do faster.
Each writes into ``out`` and returns the array that holds its result.
"""

from __future__ import annotations

from typing import Any

Array = Any


class ConvOps:
    """Gathering receptive fields into columns, folding them back, max-pooling forward and back.

    A mixin of :class:`fastbp.devices.backend.Backend`: it needs only ``self.xp``.
    """

    xp: Any

    def gather_columns(self, a: Array, kh: int, kw: int, out: Array) -> Array:
        """``cols(a)``: ``out[c, p, q, i, j, s] = a[c, i + p, j + q, s]``, ``out`` shaped
        ``(C, kh, kw, H − kh + 1, W − kw + 1, m)`` (read as ``(C·kh·kw, oh·ow·m)``: each column
        one receptive field of one sample). ``kh·kw`` slice copies, whatever ``m``."""
        oh, ow = out.shape[3], out.shape[4]
        for p in range(kh):
            for q in range(kw):
                out[:, p, q, ...] = a[:, p : p + oh, q : q + ow, :]
        return out

    def fold_columns(self, cols: Array, out: Array) -> Array:
        """The transpose of :meth:`gather_columns` (col2im): ``out[c, y, x, s] =
        Σ_{p+i=y, q+j=x} cols[c, p, q, i, j, s]`` for ``cols`` ``(C, kh, kw, oh, ow, m)`` and
        ``out`` ``(C, H, W, m)``; every pixel sums the columns that read it."""
        kh, kw, oh, ow = (int(d) for d in cols.shape[1:5])
        out[...] = 0.0
        for p in range(kh):
            for q in range(kw):
                out[:, p : p + oh, q : q + ow, :] += cols[:, p, q, ...]
        return out

    def max_pool(self, z: Array, ph: int, pw: int, out: Array, index: Array) -> Array:
        """``out[f, I, J, s] = max_{p<ph, q<pw} z[f, I·ph + p, J·pw + q, s]`` for
        ``I < ⌊oh/ph⌋``, ``J < ⌊ow/pw⌋`` (rows and columns past the last whole window are
        ignored, Theano's ``ignore_border=True``); ``index`` (int32, ``out``'s shape) receives
        the window position ``p·pw + q`` of the first maximum."""
        xp = self.xp
        rows, cols = out.shape[1] * ph, out.shape[2] * pw
        out[...] = z[:, 0:rows:ph, 0:cols:pw, :]
        index[...] = 0
        for p in range(ph):
            for q in range(pw):
                if p == q == 0:
                    continue
                candidate = z[:, p:rows:ph, q:cols:pw, :]
                index[candidate > out] = p * pw + q
                out[...] = xp.maximum(out, candidate)
        return out

    def max_pool_back(self, delta: Array, index: Array, ph: int, pw: int, out: Array) -> Array:
        """The pooled error routed to each window's maximum: ``out[f, I·ph + p, J·pw + q, s] =
        δ[f, I, J, s]`` where ``index`` is ``p·pw + q``, 0 elsewhere (and on the ignored
        border)."""
        xp = self.xp
        rows, cols = delta.shape[1] * ph, delta.shape[2] * pw
        out[...] = 0.0
        zero = xp.zeros_like(delta)
        for p in range(ph):
            for q in range(pw):
                out[:, p:rows:ph, q:cols:pw, :] = xp.where(index == p * pw + q, delta, zero)
        return out

    def reshape(self, a: Array, shape: tuple[int, ...]) -> Array:
        """``a`` read in another shape (C order); a view of a contiguous array."""
        return self.xp.reshape(a, shape)
