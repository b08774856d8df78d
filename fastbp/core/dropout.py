"""Dropout masks that every device draws alike: a counter-based hash, no generator state.

Chapter 3's dropout deletes each hidden neuron with probability ``p`` for one mini-batch. Here a
mini-batch's mask is a function of numbers alone, so ``cpu``, the compiled epoch, CUDA and any
Array API namespace draw the same one for a given seed:

- the epoch's ``seed`` (32 bits, drawn from the network's generator once per epoch),
- the step ``s`` (the mini-batch's number in the epoch, from 0),
- the layer ``l`` (``0`` is ``W^2``'s layer, as ``weights[0]``),
- the entry: neuron ``j`` of sample ``c`` of an ``m``-sample batch is entry ``i = j·m + c``.

``key = mix(seed ⊕ mix(s·2^8 + l))`` and the neuron is kept when ``mix(key + i) ≥ ⌊p·2^32⌋``
(all in unsigned 32-bit arithmetic; ``mix`` is the ``lowbias32`` integer hash). A kept neuron's
activation is scaled by ``1/(1 − p)`` ("inverted" dropout): ``ã^l = a^l ⊙ D^l`` with
``D^l ∈ {0, 1/(1 − p)}``. That is the book's rule (halve the outgoing weights when all neurons
run) moved from test time into training, so evaluation runs the network unchanged. BP2 then
reads ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ f'(z^l) ⊙ D^l`` and BP4 takes ``ã^{l-1}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

MASK32 = 0xFFFFFFFF
MIX1, MIX2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers


def mix(x: Any) -> Any:
    """The ``lowbias32`` hash of a Python int (:func:`mix_array` for arrays)."""
    x &= MASK32
    x ^= x >> 16
    x = (x * MIX1) & MASK32
    x ^= x >> 15
    x = (x * MIX2) & MASK32
    return x ^ (x >> 16)


def mix_array(xp: Any, x: Any, scratch: Any = None) -> Any:
    """``mix`` on an unsigned 32-bit array of the array module ``xp`` (NumPy, CuPy, an Array
    API namespace); the products wrap modulo ``2^32``. With ``scratch`` (an array of ``x``'s
    shape and dtype) it works in place: ``x`` becomes the hash, and nothing is allocated."""
    shift = getattr(xp, "bitwise_right_shift", None) or xp.right_shift  # CuPy: right_shift
    o, t = (None, None) if scratch is None else (x, scratch)
    x = xp.bitwise_xor(x, shift(x, 16, out=t), out=o)
    x = xp.multiply(x, MIX1, out=o)
    x = xp.bitwise_xor(x, shift(x, 15, out=t), out=o)
    x = xp.multiply(x, MIX2, out=o)
    return xp.bitwise_xor(x, shift(x, 16, out=t), out=o)


def step_key(seed: int, step: int, layer: int) -> int:
    """The key of layer ``layer``'s mask in mini-batch ``step`` of an epoch drawn with ``seed``."""
    return mix((seed & MASK32) ^ mix(((step << 8) + layer) & MASK32))


def threshold(p: float) -> int:
    """``⌊p·2^32⌋``: an entry whose hash falls below it is dropped."""
    return min(int(p * 2.0**32), MASK32)


def scale(p: float) -> float:
    """``1/(1 − p)``, the factor of a kept neuron."""
    return 1.0 / (1.0 - p)


def mask(key: int, p: float, n: int, m: int, dtype: Any = np.float64) -> np.ndarray:
    """``D``, ``(n, m)``: ``1/(1 − p)`` where neuron ``j`` of sample ``c`` is kept, else 0."""
    i = np.arange(n * m, dtype=np.uint32).reshape(n, m)
    kept = mix_array(np, i + np.uint32(key & MASK32)) >= np.uint32(threshold(p))
    return np.where(kept, np.asarray(scale(p), dtype), np.asarray(0.0, dtype))


def check_dropout(p: Any) -> float:
    """``p`` as a float in ``[0, 1)``, or ``ConfigError``."""
    try:
        value = float(p)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dropout must be a probability in [0, 1), got {p!r}") from exc
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"dropout must be a probability in [0, 1), got {p!r}")
    return value
