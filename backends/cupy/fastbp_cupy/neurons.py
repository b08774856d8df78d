"""The other neurons on the CUDA device's eager path: ``a = f(z + b)`` and BP2's ``x ⊙ f'(z)``
as fused kernels (:data:`fastbp_cupy.kernels.ELEMENTWISE`), softmax as a raw kernel.

- feedforward: σ, ``tanh``, ``relu`` of ``z + b`` in one kernel each; a softmax layer adds its
  bias, then ``fastbp_softmax_columns`` normalises each column, shifted by its largest entry
- BP2's hadamard from the activation: ``a(1 − a)``, ``1 − a²``, ``[a > 0]``

float16 runs tanh, relu and softmax with CuPy's own ufuncs (the base class), and so does a kind
without a kernel here (network3's ``linear``): the neuron table's form
(:data:`fastbp.core.neurons.NEURONS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastbp.core.ops import Array

from . import kernels as K
from .launches import softmax_launch

# this device's own kernels by neuron kind (fastbp_cupy.kernels.ELEMENTWISE); the rest are the
# neuron table's forms
BIAS_ACTIVATION = {"sigmoid": "bias_sigmoid", "tanh": "bias_tanh", "relu": "bias_relu",
                   "softmax": "bias_add"}
MUL_PRIME = {"sigmoid": "mul_sigmoid_prime", "tanh": "mul_tanh_prime", "relu": "mul_relu_prime"}


if TYPE_CHECKING:  # a mixin of CuPyBackend: the type checker sees the Backend it extends
    from fastbp.devices import Backend as _Base
else:
    _Base = object


class NeuronKernels(_Base):
    """``bias_activation`` and ``mul_activation_prime`` of :class:`~fastbp_cupy.CuPyBackend`."""

    cp: Any
    dtype: str
    index: int
    raw_error: str | None

    def bias_activation(self, z: Array, b: Array, kind: str) -> Array:
        """In place ``z ← f(z + b)`` (feedforward after the GEMM ``W a^{l-1}``)."""
        name = BIAS_ACTIVATION.get(kind)
        if name is None or (kind != "sigmoid" and self.dtype not in ("float32", "float64")):
            return super().bias_activation(z, b, kind)  # CuPy's ufuncs
        K.elementwise(self.cp, name)(b, z)
        if kind != "softmax":
            return z
        kernel = self._softmax_kernel() if z.flags.c_contiguous else None
        if kernel is None:
            return self.softmax_columns(z)  # CuPy's reductions
        launch = softmax_launch(z)
        kernel(launch.grid, launch.block, launch.args)
        return z

    def mul_activation_prime(self, x: Array, a: Array, kind: str, scratch: Array) -> Array:
        """In place ``x ← x ⊙ f'(z)`` from ``a = f(z)`` in one kernel (BP2's hadamard)."""
        name = MUL_PRIME.get(kind)
        if name is None or (kind != "sigmoid" and self.dtype not in ("float32", "float64")):
            return super().mul_activation_prime(x, a, kind, scratch)
        K.elementwise(self.cp, name)(a, x)
        return x

    def _softmax_kernel(self) -> Any:
        """The raw softmax kernel for this dtype, or ``None`` where the raw kernels do not run
        (float16, or they failed to build here)."""
        if self.raw_error is not None or self.dtype not in ("float32", "float64"):
            return None
        real = "float" if self.dtype == "float32" else "double"
        try:
            return K.raw_functions(self.cp, real, self.index)["fastbp_softmax_columns"]
        except Exception:  # noqa: BLE001 - NVRTC or loader errors: CuPy's reductions instead
            return None
