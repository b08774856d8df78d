"""Fully connected layers as network3 has them, in matrix form over the mini-batch.

``z^l = W^l ã^{l-1}``, ``a^l = f(z^l + b^l)`` with ``ã^{l-1} = a^{l-1} ⊙ D`` in training
(``D ∈ {0, 1}``, each input kept with probability ``1 − p``) and
``a^l = f((1 − p) W^l a^{l-1} + b^l)`` at evaluation: network3's dropout, which scales at test
time instead of in training. Backward: ``δ^l = ∂C/∂a^l ⊙ f'(z^l)`` (the softmax output layer is
given ``δ^L = a^L − y``), ``∂C/∂W^l = δ^l (ã^{l-1})ᵀ`` (BP4), ``∂C/∂b^l = Σ_x δ^l`` (BP3),
``∂C/∂a^{l-1} = ((W^l)ᵀ δ^l) ⊙ D`` (the first half of BP2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConfigError
from ..ops import Array, Ops
from .base import Workspace, activate, check_activation, times_prime


def _check_size(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def _check_p(p: Any) -> float:
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"p_dropout must be in [0, 1), got {p!r}")
    return value


class FullyConnected:
    """``n_in → n_out`` neurons of ``activation``; dropout ``p_dropout`` on the inputs."""

    kind_name = "fully-connected"

    def __init__(self, n_in: int, n_out: int, activation: str = "sigmoid",
                 p_dropout: float = 0.0) -> None:
        self.n_in, self.n_out = _check_size("n_in", n_in), _check_size("n_out", n_out)
        self.activation = check_activation(activation)
        self.p_dropout = _check_p(p_dropout)
        self.in_shape: tuple[int, ...] = (self.n_in,)
        self.out_shape: tuple[int, ...] = (self.n_out,)

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``W`` ``(n_out, n_in)``, ``b`` ``(n_out, 1)``."""
        return (self.n_out, self.n_in), (self.n_out, 1)

    def init(self, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """network3's draw: ``W ~ N(0, 1/n_out)`` (drawn ``(n_in, n_out)`` as the book stores
        it, then transposed), ``b ~ N(0, 1)``, in that order."""
        w = rng.normal(loc=0.0, scale=np.sqrt(1.0 / self.n_out), size=(self.n_in, self.n_out))
        b = rng.normal(loc=0.0, scale=1.0, size=(self.n_out,))
        return np.ascontiguousarray(w.T, dtype=np.float64), b.reshape(-1, 1).astype(np.float64)

    def forward(self, backend: Ops, w: Array, b: Array, a: Array, ws: Workspace,
                mask: Array | None = None, train: bool = True) -> Array:
        """``a^l = f(W ã^{l-1} + b)`` in training, ``f((1 − p) W a^{l-1} + b)`` otherwise."""
        m = int(a.shape[-1])
        a = backend.reshape(a, (self.n_in, m))
        if train and mask is not None:
            a = backend.multiply(a, mask, out=ws.get("dropped", (self.n_in, m)))
        z = backend.matmul(w, a, out=ws.get("z", (self.n_out, m)))
        if not train and self.p_dropout:
            z = backend.xp.multiply(z, 1.0 - self.p_dropout, out=z)  # type: ignore[attr-defined]
        out = activate(backend, z, b, self.activation)
        ws.saved.update(input=a, output=out, mask=mask if train else None)
        return out

    def delta(self, backend: Ops, error: Array, ws: Workspace) -> Array:
        """``δ^l = ∂C/∂a^l ⊙ f'(z^l)``, in place in ``error``."""
        a = ws.saved["output"]
        return times_prime(backend, error, a, self.activation, ws.get("scratch", a.shape))

    def backward(self, backend: Ops, w: Array, ws: Workspace, error: Array,
                 below: bool = True) -> tuple[Array, Array, Array | None]:
        """BP4, BP3 and ``∂C/∂a^{l-1} = (Wᵀ δ) ⊙ D`` from ``error``."""
        m = int(error.shape[-1])
        delta = self.delta(backend, backend.reshape(error, (self.n_out, m)), ws)
        nabla_w = backend.matmul_nt(delta, ws.saved["input"], out=ws.get("nabla_w", w.shape))
        nabla_b = backend.sum_columns(delta, out=ws.get("nabla_b", (self.n_out, 1)))
        if not below:
            return nabla_w, nabla_b, None
        grad = backend.matmul_tn(w, delta, out=ws.get("below", (self.n_in, m)))
        mask = ws.saved["mask"]
        if mask is not None:
            grad = backend.multiply(grad, mask, out=grad)
        return nabla_w, nabla_b, grad


class Softmax(FullyConnected):
    """network3's ``SoftmaxLayer``: zero ``W`` and ``b``; backward takes ``δ^L = a^L − y``
    (the log-likelihood's output error, BP1)."""

    kind_name = "softmax"

    def __init__(self, n_in: int, n_out: int, p_dropout: float = 0.0) -> None:
        super().__init__(n_in, n_out, "sigmoid", p_dropout)
        self.activation = "softmax"

    def init(self, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """``W = 0``, ``b = 0`` (no draw)."""
        wshape, bshape = self.param_shapes()
        return np.zeros(wshape), np.zeros(bshape)

    def delta(self, backend: Ops, error: Array, ws: Workspace) -> Array:
        """``error`` is ``δ^L`` already."""
        return error
