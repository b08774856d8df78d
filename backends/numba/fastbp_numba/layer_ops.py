"""The ``cpu-jit`` device's operations for chapter 6's layers: compiled loops
(:mod:`fastbp_numba.conv`) for the column gathering and folding, max-pooling and its routing back,
and the ReLU neuron's two passes, each where the ``cpu`` device makes several NumPy passes."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from fastbp.core.ops import Array
from fastbp.devices.backend import NeuronKernels
from fastbp.devices.cpu import NumpyBackend


class LayerOps(NumpyBackend):
    """The ``cpu`` device with the layer operations compiled (NumPy arrays, the same results)."""

    @property
    def conv(self) -> ModuleType:
        """:mod:`fastbp_numba.conv`, imported (and so compiled or loaded) when first needed, then
        kept (an import statement per operation costs microseconds a step at small batches)."""
        module: ModuleType | None = self.__dict__.get("_conv")
        if module is None:
            from . import conv

            module = self.__dict__["_conv"] = conv
        return module

    def gather_columns(self, a: Array, kh: int, kw: int, out: Array) -> Array:
        """``cols(a)`` in one compiled pass (:meth:`ConvOps.gather_columns`); the kernel reads
        ``a`` and writes ``out`` as flat rows, so both are C-contiguous (``out``, a work buffer,
        always is)."""
        self.conv.gather_columns(np.ascontiguousarray(a), out)
        return out

    def fold_columns(self, cols: Array, out: Array) -> Array:
        """col2im in one compiled pass (:meth:`ConvOps.fold_columns`), ``cols`` read as flat
        rows (C-contiguous)."""
        self.conv.fold_columns(np.ascontiguousarray(cols), out)
        return out

    def max_pool(self, z: Array, ph: int, pw: int, out: Array, index: Array) -> Array:
        """Max-pooling with its argmax in one compiled pass (:meth:`ConvOps.max_pool`)."""
        self.conv.max_pool(z, ph, pw, out, index)
        return out

    def max_pool_back(self, delta: Array, index: Array, ph: int, pw: int, out: Array) -> Array:
        """The pooled δ routed to the maxima in one compiled pass."""
        self.conv.max_pool_back(delta, index, ph, pw, out)
        return out

    def sgd_update(self, p: Array, grad: Array, alpha: float, beta: float = 1.0) -> None:
        """As :meth:`fastbp.devices.backend.Backend.sgd_update` (``p ← β p − α g``, ``grad``
        overwritten with ``α g``) in one compiled pass instead of three NumPy calls: a layer
        network makes eight such calls a step."""
        dtype = p.dtype
        if grad.dtype != dtype or grad.shape != p.shape or not (
                p.flags.c_contiguous and grad.flags.c_contiguous):
            super().sgd_update(p, grad, alpha, beta)
            return
        self.conv.sgd_update(p.reshape(-1), grad.reshape(-1), np.asarray(alpha, dtype),
                             np.asarray(beta, dtype))

    def neuron_kernels(self) -> dict[str, NeuronKernels]:
        """The ``cpu`` device's kernels, and ReLU's ``z ← max(z + b, 0)`` and ``x ← x ⊙ [a > 0]``
        each in one compiled pass."""
        table = super().neuron_kernels()
        table["relu"] = (self._bias_relu, self._mul_relu_prime)
        return table

    def _bias_relu(self, z: Array, b: Array) -> Array:
        if z.ndim == 2 and b.shape == (z.shape[0], 1) and b.dtype == z.dtype:
            self.conv.bias_relu(z, b)
        else:
            np.add(z, b, out=z)
            np.maximum(z, 0.0, out=z)
        return z

    def _mul_relu_prime(self, x: Array, a: Array, scratch: Array) -> Array:
        if x.ndim == 2 and a.shape == x.shape and a.dtype == x.dtype:
            self.conv.mul_relu_prime(x, a)
        else:
            np.greater(a, 0.0, out=scratch)
            np.multiply(x, scratch, out=x)
        return x
