"""``net.weights`` and ``net.biases``: the parameters ``W^l``, ``b^l`` as the user sees them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.ops import Array
from ..core.validate import check_finite
from ..errors import ShapeError

if TYPE_CHECKING:
    from .network import Network


class ParameterList(Sequence):
    """``net.weights`` / ``net.biases``: read as NumPy copies; assign arrays of the right shape."""

    def __init__(self, net: Network, arrays: list[Array], what: str) -> None:
        self._net, self._arrays, self._what = net, arrays, what

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._read(a) for a in self._arrays[i]]
        return self._read(self._arrays[i])

    def _read(self, a: Array) -> np.ndarray:
        """A host copy, never a view of the live parameter (training must not change it)."""
        out = self._net.backend.to_numpy(a)
        return out.copy() if isinstance(a, np.ndarray) else out

    def __setitem__(self, i: int, value: Any) -> None:
        self._net.backend.copy_into(self._arrays[i], self._check(i, value))

    def _check(self, i: int, value: Any) -> Any:
        """``value`` as an array fit for ``self[i]``: its shape, finite entries, else ShapeError."""
        target = self._arrays[i]
        value = self._net.backend.check_device(value, f"{self._what}[{i}]")
        value = np.asarray(value) if not self._net.backend.is_native(value) else value
        layer = i % len(self._arrays) + 2
        if tuple(value.shape) != tuple(target.shape):
            raise ShapeError(
                f"{self._what}[{i}] (layer {layer}) must have shape {tuple(target.shape)}, "
                f"got {tuple(value.shape)}"
            )
        return check_finite(value, f"{self._what}[{i}] (layer {layer})")

    def __repr__(self) -> str:
        return f"{self._what}{[tuple(a.shape) for a in self._arrays]}"
