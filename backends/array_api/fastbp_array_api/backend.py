"""``ArrayAPIBackend``: fastbp's equations on any Array API namespace (device ``array-api``).

The Array API standard has no ``out=`` argument, so every operation here computes its result
and assigns it into the buffer the equations hand over (``out[...] = ...``): the same formulas
as the ``cpu`` device, written only with portable array operations. That is what running the
tests on ``array-api-strict`` proves.

The namespace is ``$FASTBP_ARRAY_API`` (read when the backend is built; default
``array_api_strict``) or the ``namespace=`` argument: a module name such as ``numpy`` (NumPy 2
is an Array API namespace), ``array_api_strict``, or ``torch`` (through ``array-api-compat``).
``array-api:N`` selects the namespace's N-th device (``__array_namespace_info__().devices()``).
Namespaces whose arrays cannot be written in place (JAX) are not supported.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable

import numpy as np

from fastbp.core.costs import TINY
from fastbp.core.neurons import neuron
from fastbp.devices.backend import Array, Backend
from fastbp.errors import ConfigError, DeviceError

ENV_VAR = "FASTBP_ARRAY_API"
DEFAULT_NAMESPACE = "array_api_strict"


def load_namespace(name: str) -> ModuleType:
    """The Array API namespace called ``name``: the module itself when it is one, else its
    ``array_api_compat`` wrapper (``torch`` → ``array_api_compat.torch``)."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise DeviceError(
            f"device 'array-api' asks for the Array API namespace {name!r} (${ENV_VAR}), "
            f"which cannot be imported: {exc}. Install it (pip install {name.replace('_', '-')})"
            f" or set {ENV_VAR} to one that is installed, e.g. {DEFAULT_NAMESPACE} or numpy"
        ) from exc
    if hasattr(module, "__array_api_version__"):
        return module
    try:
        compat = importlib.import_module(f"array_api_compat.{name}")
    except ImportError as exc:
        raise DeviceError(
            f"{name!r} is not an Array API namespace itself; through array-api-compat it may be "
            f"(pip install array-api-compat): {exc}"
        ) from exc
    return compat


class OutNamespace:
    """``xp`` for code written against NumPy's ``out=`` (the costs' ``output_error``): each
    function computes with the namespace and assigns into ``out``; Python numbers become
    arrays of the other argument's dtype and device; adds ``vdot`` and ``ascontiguousarray``."""

    def __init__(self, ns: ModuleType, backend: ArrayAPIBackend) -> None:
        self._ns, self._backend = ns, backend

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._ns, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def call(*args: Any, out: Array | None = None, **kwargs: Any) -> Any:
            like = next((a for a in args if self._backend.is_native(a)), None)
            if like is not None:
                args = tuple(self._ns.asarray(a, dtype=like.dtype, device=like.device)
                             if isinstance(a, (int, float)) else a for a in args)
            if "dtype" in kwargs and isinstance(kwargs["dtype"], str):
                kwargs["dtype"] = getattr(self._ns, kwargs["dtype"])
            result = fn(*args, **kwargs)
            if out is None:
                return result
            out[...] = result
            return out

        return call

    def vdot(self, a: Array, b: Array) -> Array:
        """``Σ a ⊙ b`` over every entry (real arrays)."""
        return self._ns.sum(a * b)

    def ascontiguousarray(self, a: Array) -> Array:
        return self._ns.asarray(a, copy=True)


class ArrayAPIBackend(Backend):
    """The ``array-api`` device: the equations on an Array API namespace, assigning into buffers."""

    name = "array-api"
    kind = "cpu"

    def __init__(self, dtype: str = "float32", index: int = 0, *,
                 namespace: str | ModuleType | None = None) -> None:
        if namespace is None:
            namespace = os.environ.get(ENV_VAR) or DEFAULT_NAMESPACE
        ns = load_namespace(namespace) if isinstance(namespace, str) else namespace
        self.ns = ns
        super().__init__(OutNamespace(ns, self), dtype=dtype, index=index)
        self._dt = getattr(ns, self.dtype, None)
        if self._dt is None:
            raise DeviceError(f"the Array API namespace {ns.__name__} has no {self.dtype}")
        devices = self._devices()
        if index >= len(devices):
            raise DeviceError(
                f"device 'array-api:{index}' is out of range: {ns.__name__} has {len(devices)} "
                f"device(s), array-api:0 to array-api:{len(devices) - 1}"
            )
        self._dev = devices[index]
        try:
            self._array_type = type(ns.zeros((1,), dtype=self._dt, device=self._dev))
        except (TypeError, ValueError, RuntimeError) as exc:  # a device without this dtype
            raise DeviceError(
                f"device 'array-api:{index}' ({self._dev} of {ns.__name__}) cannot hold "
                f"{self.dtype} ({exc}); choose another device or dtype") from exc
        if "cuda" in str(self._dev).lower() or "gpu" in str(self._dev).lower():
            self.kind = "gpu"
            self.host_memory = False

    def _devices(self) -> list[Any]:
        info = getattr(self.ns, "__array_namespace_info__", None)
        if info is None:
            return [None]
        return list(info().devices()) or [None]

    def describe(self) -> dict[str, Any]:
        ns = self.ns
        lib = importlib.import_module(ns.__name__.rsplit(".", 1)[-1])  # compat wrapper → library
        info = super().describe()
        info.update(model=f"{ns.__name__} on {self._dev}",
                    namespace=f"{lib.__name__} {getattr(lib, '__version__', '')}".strip(),
                    array_api=getattr(ns, "__array_api_version__", "?"), numpy=np.__version__)
        return info

    @classmethod
    def probe(cls) -> list[dict[str, Any]]:
        """Each device of the namespace in force."""
        first = cls()
        return [first.describe()] + [cls(index=i).describe()
                                     for i in range(1, len(first._devices()))]

    # -- moving arrays ------------------------------------------------------------------
    def is_native(self, a: Any) -> bool:
        return isinstance(a, self._array_type)

    def check_device(self, a: Any, name: str = "X", *, host: bool = False) -> Any:
        if self.is_native(a) and self._dev is not None and a.device != self._dev:
            raise DeviceError(
                f"{name} is on {a.device}, but the network is on {self.device!r} ({self._dev}): "
                f"move the array with {self.ns.__name__}.asarray(x, device=...) or the network "
                "with net.to(...)"
            )
        return super().check_device(a, name, host=host)

    def _ns_dtype(self, dtype: str | None) -> Any:
        """The namespace's dtype called ``dtype`` (NumPy's name), default the backend's."""
        return self._dt if dtype is None else getattr(self.ns, np.dtype(dtype).name)

    def asarray(self, a: Any, dtype: str | None = None) -> Array:
        """``a`` in ``dtype`` (default the backend's) on this device; host data copied once."""
        dt = self._ns_dtype(dtype)
        if self.is_native(a):
            return a if a.dtype == dt else self.ns.astype(a, dt)
        host = np.asarray(a, dtype=np.dtype(dtype or self.dtype))
        return self.ns.asarray(host, device=self._dev)

    def to_numpy(self, a: Array) -> np.ndarray:
        """A NumPy copy of ``a`` (never a view of a live buffer)."""
        if not self.is_native(a):
            return np.array(a)
        try:
            return np.array(a, copy=True)
        except (TypeError, ValueError, RuntimeError):
            default = self.ns.__array_namespace_info__().default_device()
            return np.array(self.ns.asarray(a, device=default), copy=True)

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        return self.ns.empty(shape, dtype=self._ns_dtype(dtype), device=self._dev)

    def zeros(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        return self.ns.zeros(shape, dtype=self._ns_dtype(dtype), device=self._dev)

    def copy_into(self, dst: Array, src: Any) -> None:
        src = self.asarray(src)
        dst[...] = src if src.dtype == dst.dtype else self.ns.astype(src, dst.dtype)

    def index_array(self, order: np.ndarray) -> Array:
        return self.ns.asarray(np.asarray(order, dtype=np.int64), device=self._dev)

    # -- the arithmetic of the equations, assigned into the buffers ---------------------
    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a @ b``."""
        out[...] = self.ns.matmul(a, b)
        return out

    def _sigma(self, z: Array) -> Array:
        """``σ(z) = 1 / (1 + e^{−z})``: ``r = 1 / (1 + e^{−|z|})`` for ``z ≥ 0``, ``e^{−|z|} r``
        below. No overflow, and a few ulp everywhere, where ``(1 + tanh(z/2)) / 2`` loses every
        digit of a small σ to the cancellation."""
        e = self.ns.exp(-self.ns.abs(z))
        r = 1.0 / (1.0 + e)
        return self.ns.where(z >= 0, r, e * r)

    def sigmoid(self, z: Array, out: Array) -> Array:
        out[...] = self._sigma(z)
        return out

    def bias_sigmoid(self, z: Array, b: Array) -> Array:
        """In place: ``z ← σ(z + b)``."""
        z[...] = self._sigma(z + b)
        return z

    def sigmoid_prime(self, a: Array, out: Array) -> Array:
        """``out = a ⊙ (1 − a)``."""
        out[...] = a * (1.0 - a)
        return out

    def mul_sigmoid_prime(self, x: Array, a: Array, scratch: Array) -> Array:
        """In place: ``x ← x ⊙ a ⊙ (1 − a)`` (the hadamard of BP1/BP2)."""
        x[...] = x * (a * (1.0 - a))
        return x

    def _softmax(self, s: Array) -> Array:
        ns = self.ns
        e = ns.exp(s - ns.max(s, axis=0, keepdims=True))
        return e / ns.sum(e, axis=0, keepdims=True)

    def neuron_forms(self) -> dict[str, tuple[Callable[[Array], Array],
                                              Callable[[Array, Array], Array] | None]]:
        """This device's form of every neuron kind, by name: ``(f(s), x ⊙ f'(z) from a)``,
        written in the Array API's functions (no ``out=``, so not the neuron table's in-place
        forms)."""
        ns = self.ns
        return {"sigmoid": (self._sigma, lambda x, a: x * (a * (1.0 - a))),
                "tanh": (ns.tanh, lambda x, a: x * (1.0 - a * a)),
                "relu": (lambda s: ns.where(s > 0, s, ns.zeros_like(s)),
                         lambda x, a: ns.where(a > 0, x, ns.zeros_like(x))),
                "linear": (lambda s: s, lambda x, a: x),
                "softmax": (self._softmax, None)}

    def _forms_of(self, kind: str) -> tuple[Callable[[Array], Array],
                                            Callable[[Array, Array], Array] | None]:
        """``kind``'s forms, or ``ConfigError`` naming the neuron table's kinds this device has
        no form for (a new record of :data:`fastbp.core.neurons.NEURONS` needs one here)."""
        forms = self.neuron_forms()
        if kind not in forms:
            neuron(kind)  # an unknown kind: the table's error
            raise ConfigError(f"device {self.name!r} has no form of the {kind!r} neuron; "
                              f"it computes {sorted(forms)}")
        return forms[kind]

    def bias_activation(self, z: Array, b: Array, kind: str) -> Array:
        """In place: ``z ← f(z + b)``; softmax down each column, shifted by its largest entry."""
        z[...] = self._forms_of(kind)[0](z + b)
        return z

    def mul_activation_prime(self, x: Array, a: Array, kind: str, scratch: Array) -> Array:
        """In place: ``x ← x ⊙ f'(z)`` from ``a``: ``a(1 − a)``, ``1 − a²``, ``[a > 0]``, 1."""
        prime = self._forms_of(kind)[1]
        if prime is None:
            raise ValueError(f"BP2 has no derivative for a {kind} layer (an output layer)")
        x[...] = prime(x, a)
        return x

    def sum_log_picked(self, a: Array, y: Array, scratch: Array) -> Array:
        """``Σ y ln max(a, tiny)`` (the log-likelihood of one-hot ``y``)."""
        ns = self.ns
        tiny = TINY[self.dtype]
        return ns.sum(y * ns.log(ns.where(a > tiny, a, ns.full_like(a, tiny))))

    def sum_columns(self, a: Array, out: Array) -> Array:
        out[...] = self.ns.sum(a, axis=1, keepdims=True)
        return out

    def matmul_nt(self, a: Array, b: Array, out: Array) -> Array:
        out[...] = self.ns.matmul(a, self.ns.matrix_transpose(b))
        return out

    def matmul_tn(self, a: Array, b: Array, out: Array) -> Array:
        out[...] = self.ns.matmul(self.ns.matrix_transpose(a), b)
        return out

    def sgd_weights(self, w: Array, delta: Array, a_prev: Array, alpha: float, beta: float,
                    scratch: Array) -> None:
        """``W ← β W − α δ (a^{l-1})ᵀ`` (BP4 folded into the step)."""
        grad = self.ns.matmul(delta, self.ns.matrix_transpose(a_prev))
        w[...] = (w if beta == 1.0 else beta * w) - alpha * grad

    def sgd_biases(self, b: Array, delta: Array, alpha: float, scratch: Array) -> None:
        """``b ← b − α Σ_j δ_j`` (BP3 folded into the step)."""
        b[...] = b - alpha * self.ns.sum(delta, axis=1, keepdims=True)

    def take_rows(self, src: Array, idx: Array, out: Array) -> Array:
        out[...] = self.ns.take(src, idx, axis=0)
        return out

    def argmax_columns(self, a: Array) -> Array:
        return self.ns.argmax(a, axis=0)

    def count_equal(self, a: Array, b: Array) -> Array:
        return self.ns.sum(self.ns.astype(a == b, self.ns.int64))

    def all_finite(self, a: Array) -> bool:
        return bool(self.ns.all(self.ns.isfinite(a)))
