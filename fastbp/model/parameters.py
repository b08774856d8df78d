"""``net.weights`` and ``net.biases``: the parameters ``W^l``, ``b^l`` as the user sees them
(and ``net.velocities``, momentum's ``v`` of every ``W^l`` then every ``b^l``, alike).

A read is a host copy that training never changes, and it is read-only: an edit of it could not
reach the network (on a GPU it lives elsewhere), so ``net.weights[0][0, 0] = 1.0`` raises and
says to assign instead (``w = net.weights[0].copy(); w[0, 0] = 1.0; net.weights[0] = w``).
``net.weights + net.biases`` is a plain list, as with the book's lists of arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.ops import Array
from ..core.validate import cast_checked, check_finite, may_overflow
from ..errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from .trainee import Trainee


class ParameterArray(np.ndarray):
    """A read-only host copy of one parameter; writing into it raises with how to assign.
    Arithmetic on it, and ``.copy()``, give ordinary (writable) NumPy arrays."""

    label: str = "this parameter"

    def __array_finalize__(self, obj: Any) -> None:
        self.label = getattr(obj, "label", ParameterArray.label)

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False
                       ) -> Any:
        out = np.asarray(array).view(np.ndarray)
        return out[()] if return_scalar else out

    def copy(self, order: Any = "C") -> np.ndarray:  # type: ignore[override]
        return np.array(self, order=order, copy=True, subok=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self.flags.writeable:
            self._refuse()
        super().__setitem__(key, value)

    def fill(self, value: Any) -> None:
        if not self.flags.writeable:
            self._refuse()
        super().fill(value)

    def _refuse(self) -> None:
        raise ConfigError(
            f"{self.label} is a read-only copy: an edit of it would not reach the network. "
            f"Edit a copy and assign it: w = {self.label}.copy(); w[...] = ...; "
            f"{self.label} = w")

    def _inplace(self, op: Any, other: Any) -> Any:
        if not self.flags.writeable:
            self._refuse()
        return op(self, other)

    def __iadd__(self, other: Any) -> Any:
        return self._inplace(np.ndarray.__iadd__, other)

    def __isub__(self, other: Any) -> Any:
        return self._inplace(np.ndarray.__isub__, other)

    def __imul__(self, other: Any) -> Any:
        return self._inplace(np.ndarray.__imul__, other)

    def __itruediv__(self, other: Any) -> Any:
        return self._inplace(np.ndarray.__itruediv__, other)

    def __ipow__(self, other: Any) -> Any:
        return self._inplace(np.ndarray.__ipow__, other)


class ParameterList(Sequence):
    """``net.weights`` / ``net.biases``: read as read-only NumPy copies; assign arrays of the
    right shape (``net.weights[0] = w`` or ``net.weights = [...]``). ``+`` concatenates into a
    list."""

    def __init__(self, net: Trainee, arrays: list[Array], what: str) -> None:
        self._net, self._arrays, self._what = net, arrays, what

    def __len__(self) -> int:
        return len(self._arrays)

    def __reduce__(self) -> tuple[Any, tuple[list[np.ndarray]]]:
        """Pickled (as MPI sends it) as a plain list of host copies."""
        return list, ([np.array(a) for a in self],)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._read(self._arrays[k], k) for k in range(len(self._arrays))[i]]
        k = range(len(self._arrays))[i]  # IndexError as a list gives it
        return self._read(self._arrays[k], k)

    def _read(self, a: Array, i: int) -> ParameterArray:
        """A read-only host copy, never a view of the live parameter (training must not change
        it, and an edit of it could not change the network)."""
        out = self._net.backend.to_numpy(a)
        if isinstance(a, np.ndarray) or out.base is not None or not out.flags.owndata:
            out = out.copy()
        view = out.view(ParameterArray)
        view.label = f"net.{self._what}[{i}]"
        view.flags.writeable = False
        return view

    def __add__(self, other: Any) -> list[Any]:
        """``net.weights + net.biases`` (or ``+ [...]``): a list, as the book's lists give."""
        if isinstance(other, (Sequence, list)) and not isinstance(other, (str, bytes)):
            return [*self, *other]
        return NotImplemented

    def __radd__(self, other: Any) -> list[Any]:
        if isinstance(other, (Sequence, list)) and not isinstance(other, (str, bytes)):
            return [*other, *self]
        return NotImplemented

    def __setitem__(self, i: int, value: Any) -> None:
        self._net.backend.copy_into(self._arrays[i], self._check(i, value))

    def _check(self, i: int, value: Any) -> Any:
        """``value`` as an array fit for ``self[i]``: its shape, finite entries, else ShapeError."""
        target = self._arrays[i]
        value = self._net.backend.check_device(value, f"{self._what}[{i}]")
        value = np.asarray(value) if not self._net.backend.is_native(value) else value
        per_kind = len(self._arrays) // (2 if self._what == "velocities" else 1)
        layer = i % per_kind + 2
        if tuple(value.shape) != tuple(target.shape):
            raise ShapeError(
                f"{self._what}[{i}] (layer {layer}) must have shape {tuple(target.shape)}, "
                f"got {tuple(value.shape)}"
            )
        name = f"{self._what}[{i}] (layer {layer})"
        value = check_finite(value, name)
        if may_overflow(getattr(value, "dtype", np.float64), self._net.dtype):
            cast_checked(self._net.backend, value, name)
        return value

    def __repr__(self) -> str:
        return f"{self._what}{[tuple(a.shape) for a in self._arrays]}"

    def assign(self, values: Iterable[Any]) -> None:
        """Copy ``values`` (one array per layer) into these parameters, all or nothing."""
        try:
            values = list(values)
        except TypeError as exc:
            raise ShapeError(f"{self._what} must be a list of arrays, got "
                             f"{type(values).__name__}") from exc
        if len(values) != len(self):
            raise ShapeError(f"expected {len(self)} arrays for {self._what}, got {len(values)}")
        checked = [self._check(i, v) for i, v in enumerate(values)]
        for i, v in enumerate(checked):
            self._net.backend.copy_into(self._arrays[i], v)
