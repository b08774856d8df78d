"""``Backend``: the device interface, written once against an array module ``xp``.

A backend owns an array module ``xp``, a device and a dtype, and the few fused operations where
fusion pays. It implements :class:`fastbp.core.ops.Ops`, the operations the equations and the
epoch loop in :mod:`fastbp.core` call, so another device (CuPy, any Array API namespace, a
compiled CPU loop) is a subclass that overrides the hot spots. The built-in ``cpu`` device is
:class:`fastbp.devices.cpu.NumpyBackend`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..core import dropout, memory
from ..core.costs import TINY
from ..core.neurons import neuron
from ..core.ops import DTYPES, Array, Scalar, check_dtype
from ..errors import DeviceError
from .conv_ops import ConvOps

NeuronKernels = tuple[Callable[[Any, Any], Any] | None, Callable[[Any, Any, Any], Any] | None]
"""A device's own ``(bias_activation(z, b), mul_prime(x, a, scratch))`` for one neuron kind."""

if TYPE_CHECKING:
    from ..core.plan import EpochPlan

__all__ = ["DTYPES", "Array", "Backend", "array_device", "check_dtype"]


class Backend(ConvOps):
    """One device with one array module. Written once against ``self.xp``.

    (Why a class of this size: one short method per operation of :class:`fastbp.core.ops.Ops`,
    the contract every device fulfils; splitting it would split the contract.)

    Subclasses set ``name`` and ``kind`` and override what their module does differently.
    Every method that takes ``out`` writes its result there and returns it.
    """

    name = "base"
    kind = "cpu"
    # What distributed training may do with this device's arrays (fastbp.parallel.reduce):
    host_arrays = False  # they are NumPy arrays in host memory: MPI reduces them as they are
    staged_arrays = False  # device arrays MPI reduces through host buffers or CUDA-aware MPI
    host_memory = True  # its arrays live in host memory, so the host's free memory is its own

    def __init__(self, xp: Any, dtype: str = "float32", index: int = 0) -> None:
        self.xp = xp
        self.dtype = check_dtype(dtype)
        self.index = index

    # -- identity -----------------------------------------------------------------------
    @property
    def device(self) -> str:
        """The device string that selects this backend, e.g. ``cpu`` or ``cuda:1``."""
        return self.name if self.index == 0 else f"{self.name}:{self.index}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device!r} dtype={self.dtype}>"

    def describe(self) -> dict[str, Any]:
        """What ``fastbp devices`` prints for this backend."""
        return {"name": self.name, "kind": self.kind, "device": self.device}

    @classmethod
    def probe(cls) -> list[dict[str, Any]]:
        """Describe every device of this backend visible here (``fastbp devices``).

        Raises :class:`~fastbp.DeviceError` saying why when none can run here. Backends with
        several devices (``cuda:0``, ``cuda:1``, ...) override this to list each one.
        """
        make: Callable[..., Backend] = cls  # a concrete subclass: (dtype=, index=)
        return [make(dtype="float32", index=0).describe()]

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make this backend's device current for the work inside the block."""
        yield

    def stack_backprop(self, stack: Any, params: Any, x: Array, y: Array,
                       masks: Any) -> tuple[Scalar, list] | None:
        """A layer stack's backprop computed this device's own way, or ``None``: here none
        (:meth:`fastbp.core.layers.stack.Stack.backprop_here` runs it)."""
        return None

    def fingerprint(self, a: Any) -> int | None:
        """A 64-bit fingerprint of a contiguous host array's bytes, computed at memory speed, or
        ``None`` where the device has none (then ``train`` copies its data on every call:
        :mod:`fastbp.model.kept`)."""
        return None

    def between_epochs(self, plan: Any) -> contextlib.AbstractContextManager[None]:
        """The setting for work between two epochs of ``plan`` (the evaluation after each):
        nothing here; a device whose epochs leave threads idle keeps that work off them."""
        return contextlib.nullcontext()

    # -- moving arrays ------------------------------------------------------------------
    def asarray(self, a: Any, dtype: str | None = None) -> Array:
        """``a`` as an array of this backend (copied only if it must be)."""
        return self.xp.asarray(a, dtype=dtype or self.dtype)

    def to_numpy(self, a: Array) -> np.ndarray:
        """``a`` as a NumPy array on the host."""
        return np.asarray(a)

    def is_native(self, a: Any) -> bool:
        """Whether ``a`` is already an array of this backend."""
        return isinstance(a, np.ndarray)

    def check_device(self, a: Any, name: str = "X", *, host: bool = False) -> Any:
        """``a`` if this backend can take it: host data (moved later, once) or its own arrays.

        An array that lives on another device (a CuPy array given to a ``cpu`` network, ...)
        raises :class:`~fastbp.DeviceError` naming both devices and how to move one of them.
        With ``host=True`` an array of this backend comes back as NumPy (labels are checked
        on the host).
        """
        if self.is_native(a):
            return self.to_numpy(a) if host else a
        where = array_device(a)
        if where is not None:
            raise DeviceError(
                f"{name} is a {type(a).__module__.split('.')[0]} array on {where}, but the "
                f"network is on {self.device!r}: move the network with net.to({where!r}), or "
                f"the array to the host (for example {_to_host_hint(a)})"
            )
        return a

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        return self.xp.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def copy_into(self, dst: Array, src: Any) -> None:
        """Write host or device data ``src`` into the existing array ``dst``."""
        dst[...] = self.asarray(src, dtype=str(dst.dtype))

    def synchronize(self) -> None:
        """Wait until every queued operation on the device has finished."""

    def free_bytes(self) -> int | None:
        """Memory free on this device in bytes, ``None`` if unknown (the host's for ``cpu``)."""
        return memory.host_available() if self.host_memory else None

    def contiguous(self, a: Array) -> Array:
        """``a`` as a C-contiguous array of this backend (a copy only if it is not one)."""
        return self.xp.ascontiguousarray(a)

    # -- the arithmetic of the equations -----------------------------------------------
    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a @ b``."""
        return self.xp.matmul(a, b, out=out)

    def sigmoid(self, z: Array, out: Array) -> Array:
        """``out = σ(z) = 1 / (1 + e^{-z})``, a few ulp everywhere (``(1 + tanh(z/2)) / 2`` would
        lose every digit of a small σ to the cancellation). ``e^{-z}`` overflows to inf for very
        negative ``z``, where σ is 0 either way."""
        xp = self.xp
        xp.negative(z, out=out)
        with np.errstate(over="ignore"):  # NumPy's warning; other modules give none
            xp.exp(out, out=out)
        xp.add(out, 1.0, out=out)
        xp.divide(1.0, out, out=out)
        return out

    def bias_sigmoid(self, z: Array, b: Array) -> Array:
        """In place: ``z ← σ(z + b)``; turns ``W a^{l-1}`` into ``a^l``."""
        self.xp.add(z, b, out=z)
        return self.sigmoid(z, out=z)

    def sigmoid_prime(self, a: Array, out: Array) -> Array:
        """``out = σ'(z) = a ⊙ (1 − a)``, from the activation ``a = σ(z)``."""
        xp = self.xp
        xp.subtract(1.0, a, out=out)
        xp.multiply(out, a, out=out)
        return out

    def mul_sigmoid_prime(self, x: Array, a: Array, scratch: Array) -> Array:
        """In place: ``x ← x ⊙ σ'(z)`` with ``σ'(z) = a ⊙ (1 − a)`` (the hadamard of BP1/BP2)."""
        self.sigmoid_prime(a, out=scratch)
        self.xp.multiply(x, scratch, out=x)
        return x

    def neuron_kernels(self) -> dict[str, NeuronKernels]:
        """This device's own kernels by neuron kind: ``(bias_activation(z, b),
        mul_prime(x, a, scratch))``, either ``None`` for the neuron table's generic form
        (:data:`fastbp.core.neurons.NEURONS`). A device overrides this to register its own."""
        return {"sigmoid": (self.bias_sigmoid, self.mul_sigmoid_prime),
                "softmax": (self._bias_softmax, None)}

    def _kernels_of(self, kind: str) -> NeuronKernels:
        table = self.__dict__.get("_neuron_kernels")
        if table is None:
            table = self.__dict__["_neuron_kernels"] = self.neuron_kernels()
        return table.get(kind, (None, None))

    def bias_activation(self, z: Array, b: Array, kind: str) -> Array:
        """In place: ``z ← f(z + b)`` for a layer of ``kind`` (sigmoid, tanh, relu, softmax);
        turns ``W a^{l-1}`` into ``a^l``: the device's own kernel for the kind, else the neuron
        table's form."""
        own = self._kernels_of(kind)[0]
        if own is not None:
            return own(z, b)
        self.xp.add(z, b, out=z)
        return neuron(kind).activate(self.xp, z, 0)

    def _bias_softmax(self, z: Array, b: Array) -> Array:
        self.xp.add(z, b, out=z)
        return self.softmax_columns(z)

    def softmax_columns(self, z: Array) -> Array:
        """In place: ``z_j ← e^{z_j − max z} / Σ_k e^{z_k − max z}`` down each column (shifted
        by the column's largest entry, so no exponent overflows)."""
        xp = self.xp
        xp.subtract(z, xp.max(z, axis=0, keepdims=True), out=z)
        xp.exp(z, out=z)
        xp.divide(z, xp.sum(z, axis=0, keepdims=True), out=z)
        return z

    def mul_activation_prime(self, x: Array, a: Array, kind: str, scratch: Array) -> Array:
        """In place: ``x ← x ⊙ f'(z)`` with ``f'`` written from ``a = f(z)``: sigmoid
        ``a(1 − a)``, tanh ``1 − a²``, relu ``[a > 0]`` (the hadamard of BP2): the device's own
        kernel for the kind, else the neuron table's form."""
        own = self._kernels_of(kind)[1]
        if own is not None:
            return own(x, a, scratch)
        prime = neuron(kind).prime
        if prime is None:
            raise ValueError(f"BP2 has no derivative for a {kind} layer (an output layer)")
        prime(self.xp, a, scratch)
        return self.xp.multiply(x, scratch, out=x)

    def sum_log_picked(self, a: Array, y: Array, scratch: Array) -> Scalar:
        """``Σ y ln max(a, tiny)`` over every entry (the log-likelihood of BP1 for one-hot
        ``y``: ``ln a_y`` per column), ``tiny`` the dtype's smallest normal number."""
        xp = self.xp
        xp.maximum(a, TINY[self.dtype], out=scratch)
        xp.log(scratch, out=scratch)
        return xp.vdot(y, scratch)

    def subtract(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a − b``."""
        return self.xp.subtract(a, b, out=out)

    def sum_squares(self, a: Array) -> Scalar:
        """``Σ a²`` over every entry (the quadratic cost of BP1)."""
        return self.xp.vdot(a, a)

    def sum_log1m_abs(self, a: Array, scratch: Array) -> Scalar:
        """``Σ ln max(1 − |a|, tiny)`` over every entry, ``tiny`` the dtype's smallest normal
        number (the cross-entropy of BP1 for one-hot targets, from ``a = a^L − y``)."""
        xp = self.xp
        xp.abs(a, out=scratch)
        xp.subtract(1.0, scratch, out=scratch)
        xp.maximum(scratch, TINY[self.dtype], out=scratch)
        xp.log(scratch, out=scratch)
        return xp.sum(scratch)

    def sum_columns(self, a: Array, out: Array) -> Array:
        """``out = Σ_j a[:, j]`` as a column ``(n, 1)``."""
        return self.xp.sum(a, axis=1, keepdims=True, out=out)

    def matmul_nt(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a bᵀ``."""
        return self.xp.matmul(a, b.T, out=out)

    def matmul_tn(self, a: Array, b: Array, out: Array) -> Array:
        """``out = aᵀ b``."""
        return self.xp.matmul(a.T, b, out=out)

    def sgd_weights(
        self, w: Array, delta: Array, a_prev: Array, alpha: float, beta: float, scratch: Array
    ) -> None:
        """BP4 folded into the SGD step: ``W ← β W − α δ (a^{l-1})ᵀ``."""
        self.matmul_nt(delta, a_prev, out=scratch)
        self.sgd_update(w, scratch, alpha, beta)

    def sgd_biases(self, b: Array, delta: Array, alpha: float, scratch: Array) -> None:
        """BP3 folded into the SGD step: ``b ← b − α Σ_j δ_j``."""
        self.sum_columns(delta, out=scratch)
        self.sgd_update(b, scratch, alpha)

    def sgd_update(self, p: Array, grad: Array, alpha: float, beta: float = 1.0) -> None:
        """The SGD step from a gradient already summed over the batch, in place:
        ``p ← β p − α g`` (``grad`` is overwritten with ``α g``). ``sgd_weights`` and
        ``sgd_biases`` end with it; distributed training calls it after the reduction."""
        if beta != 1.0:
            self.xp.multiply(p, beta, out=p)
        grad *= alpha
        self.xp.subtract(p, grad, out=p)

    def velocity_update(self, p: Array, grad: Array, velocity: Array, alpha: float, mu: float,
                        l2: float = 0.0, l1: float = 0.0) -> None:
        """Chapter 3's step, in place, from a gradient ``g`` summed over the batch (``grad``,
        overwritten): ``v ← μ v − α g − l2·p − l1·sgn(p)``, then ``p ← p + v``.

        ``α = η/m``, ``l2 = ηλ/n`` (L2), ``l1 = ηλ₁/n`` (L1), ``μ`` the momentum (0: ``v`` is
        just the step). With ``μ = l1 = 0`` it is the plain rule ``p ← (1 − l2) p − α g``
        (:meth:`sgd_update`), rounded once more."""
        xp, v = self.xp, velocity
        xp.multiply(grad, alpha, out=grad)
        if mu:
            xp.multiply(v, mu, out=v)
            xp.subtract(v, grad, out=v)
        else:
            xp.negative(grad, out=v)
        if l2:
            xp.multiply(p, l2, out=grad)
            xp.subtract(v, grad, out=v)
        if l1:
            xp.sign(p, out=grad)
            xp.multiply(grad, l1, out=grad)
            xp.subtract(v, grad, out=v)
        xp.add(p, v, out=p)

    def multiply(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a ⊙ b``."""
        return self.xp.multiply(a, b, out=out)

    def dropout_mask(self, key: int, p: float, out: Array) -> Array:
        """``out = D``, the dropout mask of :mod:`fastbp.core.dropout` for ``key``: entry
        ``(j, c)`` of an ``(n, m)`` mask is ``1/(1 − p)`` when ``mix(key + j·m + c) ≥ ⌊p·2^32⌋``,
        else 0."""
        xp = self.xp
        n, m = (int(d) for d in out.shape)
        index = self._mask_index(n * m)
        h = dropout.mix_array(xp, xp.add(index, key & dropout.MASK32))
        kept = xp.reshape(xp.greater_equal(h, dropout.threshold(p)), (n, m))
        out[...] = xp.where(kept, xp.asarray(dropout.scale(p), dtype=out.dtype),
                            xp.asarray(0.0, dtype=out.dtype))
        return out

    def _mask_index(self, size: int) -> Array:
        """``0, 1, …, size − 1`` as unsigned 32-bit integers on the device (kept per size)."""
        cache = self.__dict__.setdefault("_mask_indices", {})
        index = cache.get(size)
        if index is None:
            index = cache[size] = self.xp.arange(size, dtype=self.xp.uint32)
        return index

    def take_rows(self, src: Array, idx: Array, out: Array) -> Array:
        """Gather rows: ``out[i] = src[idx[i]]`` (mini-batches from a sample-major data set)."""
        return self.xp.take(src, idx, axis=0, out=out)

    def argmax_columns(self, a: Array) -> Array:
        """The index of the largest entry of each column."""
        return self.xp.argmax(a, axis=0)

    def count_equal(self, a: Array, b: Array) -> Array:
        """How many entries of ``a`` and ``b`` are equal, as a device scalar."""
        return self.xp.sum(a == b)

    def all_finite(self, a: Array) -> bool:
        """Whether ``a`` holds no NaN or inf (reads one scalar back from the device)."""
        return bool(self.xp.all(self.xp.isfinite(a)))

    def index_array(self, order: np.ndarray) -> Array:
        """A host permutation of sample indices moved to the device."""
        return self.xp.asarray(order)

    def gradient_reducer(self, comm: Any, flat: Array | None) -> Any:
        """This device's own way to sum gradients over the ranks of distributed training, or
        ``None`` (the default), and :mod:`fastbp.parallel` sums them with MPI.

        The result is a callable ``reduce(flat)`` that overwrites the flat gradient buffer with
        ``Σ_ranks flat`` in place, named by its ``path`` attribute (e.g. ``"nccl"``). Building it
        must not communicate: every rank asks, then the ranks agree on one path. It may set
        itself up over ``comm`` (an mpi4py communicator) on its first call, which every rank
        makes at once. ``comm`` and ``flat`` are ``None`` when only the path's name is asked for.
        """
        return None

    # -- a whole epoch --------------------------------------------------------------------
    def sgd_epoch(self, plan: EpochPlan) -> Scalar | None:
        """This device's own epoch of mini-batch SGD over ``plan.cursor.order``, returning the
        summed cost; ``None`` (the default) means it has none and the generic loop
        (:func:`fastbp.core.epoch.sgd_epoch`) runs. Backends that compile or capture the whole
        epoch override this."""
        return None


# DLPack device types (dlpack.h), for naming where a foreign array lives.
_DLPACK_DEVICES = {2: "cuda", 3: "cuda-host", 4: "opencl", 7: "vulkan", 8: "mps", 10: "rocm",
                   13: "cuda-managed", 14: "oneapi"}


def array_device(a: Any) -> str | None:
    """Where ``a`` lives when that is not the host (``'cuda:0'``, ...), else ``None``.

    Read from the array protocols (``__cuda_array_interface__``, ``__dlpack_device__``), so
    no array library is imported to recognise its arrays.
    """
    if isinstance(a, (np.ndarray, np.generic)):
        return None
    try:
        kind, index = a.__dlpack_device__()
    except Exception:  # noqa: BLE001 - no protocol, or an array that refuses it
        kind, index = None, 0
    if kind is not None and int(kind) != 1:  # 1 is kDLCPU
        return f"{_DLPACK_DEVICES.get(int(kind), f'device-type-{int(kind)}')}:{int(index)}"
    if kind is None and hasattr(a, "__cuda_array_interface__"):
        return "cuda"
    return None


def _to_host_hint(a: Any) -> str:
    lib = type(a).__module__.split(".")[0]
    return {"cupy": "cupy.asnumpy(x)", "torch": "x.cpu().numpy()", "jax": "numpy.asarray(x)"
            }.get(lib, "numpy.from_dlpack(x)")

