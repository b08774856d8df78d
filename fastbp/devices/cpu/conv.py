"""The ``cpu`` device's max-pooling: the generic operations of
:class:`fastbp.devices.conv_ops.ConvOps` with NumPy's ``out=`` and ``where=``, so a step makes no
temporary arrays and no boolean indexing (the comparison buffer is kept per shape and thread)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..conv_ops import Array, ConvOps


class NumpyConvOps(ConvOps):
    """Max-pooling forward and back in place, for NumPy arrays."""

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A work buffer of ``shape``, kept for the next call of this thread: networks sharing
        one ``cpu`` instance may train in different threads, so each thread has its own."""
        local = self.__dict__.setdefault("_scratch_local", threading.local())
        cache: dict[tuple[Any, ...], np.ndarray] = local.__dict__.setdefault("bufs", {})
        key = (name, shape, np.dtype(dtype))
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = np.empty(shape, dtype=dtype)
        return buf

    def _flags(self, shape: tuple[int, ...]) -> np.ndarray:
        """A boolean buffer of ``shape``, kept for the next call (of this thread)."""
        return self._scratch("pool-flags", shape, bool)

    def reshape(self, a: Array, shape: tuple[int, ...]) -> Array:
        """As :meth:`ConvOps.reshape`, by the array's own method (a step makes some twenty of
        these calls; ``numpy.reshape``'s dispatch costs more than the view)."""
        return a.reshape(shape)

    def max_pool(self, z: Array, ph: int, pw: int, out: Array, index: Array) -> Array:
        """As :meth:`ConvOps.max_pool`: ``out`` the window maxima, ``index`` the first one's
        position ``p·pw + q``."""
        rows, cols = out.shape[1] * ph, out.shape[2] * pw
        flags = self._flags(out.shape)
        np.copyto(out, z[:, 0:rows:ph, 0:cols:pw, :])
        index.fill(0)
        for k in range(1, ph * pw):
            p, q = divmod(k, pw)
            candidate = z[:, p:rows:ph, q:cols:pw, :]
            np.greater(candidate, out, out=flags)
            np.copyto(index, k, where=flags)
            np.maximum(out, candidate, out=out)
        return out

    def max_pool_back(self, delta: Array, index: Array, ph: int, pw: int, out: Array) -> Array:
        """As :meth:`ConvOps.max_pool_back`: ``δ`` written at each window's maximum."""
        rows, cols = delta.shape[1] * ph, delta.shape[2] * pw
        if rows < out.shape[1] or cols < out.shape[2]:
            out.fill(0.0)  # the ignored border
        flags = self._flags(delta.shape)
        for k in range(ph * pw):
            p, q = divmod(k, pw)
            np.equal(index, k, out=flags)
            np.multiply(delta, flags, out=out[:, p:rows:ph, q:cols:pw, :])
        return out
