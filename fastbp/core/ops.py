"""The array operations the equations need: the contract between the math and a device.

The core never touches an array module itself; it calls these operations on a backend. The
interface is declared here as a :class:`typing.Protocol` so that the math depends on nothing above
it; :class:`fastbp.devices.Backend` implements it once against an array module ``xp``, and each
device overrides only its hot spots. Every operation that takes ``out`` writes its result there.
"""

from __future__ import annotations

from typing import Any, ContextManager, Protocol

import numpy as np

from ..errors import ConfigError

Array = Any  # an array of the backend's module (numpy.ndarray, cupy.ndarray, ...)
Scalar = Any  # a number, or a 0-d array left on the device until it is read

DTYPES = ("float16", "float32", "float64")


def check_dtype(dtype: Any) -> str:
    """Return the canonical name of a floating dtype, or raise ``ConfigError``."""
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise ConfigError(f"dtype must be one of {DTYPES}, got None")
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise ConfigError(f"dtype {dtype!r} is not a NumPy dtype; use one of {DTYPES}") from exc
    if name not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use one of {DTYPES}")
    return name


class Ops(Protocol):
    """What a device gives the math: buffers, the products and the fused elementwise passes."""

    name: str
    kind: str
    dtype: str

    @property
    def device(self) -> str: ...

    def activate(self) -> ContextManager[None]: ...
    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Array: ...
    def copy_into(self, dst: Array, src: Any) -> None: ...
    def to_numpy(self, a: Array) -> np.ndarray: ...
    def free_bytes(self) -> int | None: ...

    # feedforward: z^l = W^l a^{l-1} + b^l, a^l = σ(z^l)
    def matmul(self, a: Array, b: Array, out: Array) -> Array: ...
    def bias_sigmoid(self, z: Array, b: Array) -> Array: ...

    # BP1: the output error and the cost
    def subtract(self, a: Array, b: Array, out: Array) -> Array: ...
    def sum_squares(self, a: Array) -> Scalar: ...
    def sum_log1m_abs(self, a: Array, scratch: Array) -> Scalar: ...

    # BP2: δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ σ'(z^l)
    def matmul_tn(self, a: Array, b: Array, out: Array) -> Array: ...
    def mul_sigmoid_prime(self, x: Array, a: Array, scratch: Array) -> Array: ...

    # BP3, BP4 and the update folded into them
    def sum_columns(self, a: Array, out: Array) -> Array: ...
    def matmul_nt(self, a: Array, b: Array, out: Array) -> Array: ...
    def sgd_weights(self, w: Array, delta: Array, a_prev: Array, alpha: float, beta: float,
                    scratch: Array) -> None: ...
    def sgd_biases(self, b: Array, delta: Array, alpha: float, scratch: Array) -> None: ...

    # gathering mini-batches and counting hits
    def take_rows(self, src: Array, idx: Array, out: Array) -> Array: ...
    def argmax_columns(self, a: Array) -> Array: ...
    def count_equal(self, a: Array, b: Array) -> Scalar: ...
    def all_finite(self, a: Array) -> bool: ...
