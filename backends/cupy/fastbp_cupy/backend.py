"""``CuPyBackend``: the ``cuda`` device. The equations on CuPy arrays, products on cuBLAS.

CuPy is imported when the backend is built (``device="cuda"``), never at ``import fastbp`` or
when the plugin's entry point is loaded; every way that can fail becomes a ``DeviceError`` that
keeps CuPy's or CUDA's own message and says what to do.

The eager step (any batch size):

* feedforward ``a^l = σ(W^l a^{l-1} + b^l)``: one ``cublas.gemm`` and one fused kernel
  (bias + σ) per layer;
* BP1/BP2: the hadamard ``⊙ a(1 − a)`` is one fused kernel;
* BP3/BP4 folded into the SGD step, both on cuBLAS: ``W ← β W − (η/m) δ (a^{l-1})ᵀ`` is
  ``gemm('N', 'T', δ, a^{l-1}, out=W, alpha=−η/m, beta=β)`` and ``b ← b − (η/m) δ 1`` is
  ``gemm('N', 'N', δ, 1, out=b, alpha=−η/m, beta=1)``.

The data set stays on the device sample-major; mini-batches are gathered there; the epoch's
cost is summed on the device and read once. At small batch sizes the step is captured as a
CUDA graph (:mod:`fastbp_cupy.graph`); ``graphs=False`` or ``FASTBP_CUDA_GRAPHS=0`` turns that
off, and a capture that fails falls back to the eager step with one warning.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections import OrderedDict
from typing import Any, Iterator

import numpy as np

from fastbp import training
from fastbp.backend import Array, Backend
from fastbp.errors import DeviceError

from . import kernels as K
from .graph import CapturedEpoch, NotCapturable, StepProgram

log = logging.getLogger("fastbp")

INSTALL = ('pip install "./backends/cupy[cuda12]" from a fastbp checkout (use [cuda13] with a '
           'CUDA 13 driver), or pip install "cupy-cuda12x[ctk]"')
GRAPHS_ENV = "FASTBP_CUDA_GRAPHS"


def import_cupy() -> Any:
    """``import cupy``, or a ``DeviceError`` that says how to install it or why it broke."""
    try:
        import cupy
    except ImportError as exc:
        if exc.name == "cupy" or "No module named 'cupy'" in str(exc):
            raise DeviceError(f"device 'cuda' needs CuPy, which is not installed: {INSTALL}"
                              ) from exc
        raise DeviceError(f"CuPy is installed but cannot be imported ({exc}); reinstall the "
                          f"wheel that matches your CUDA driver: {INSTALL}") from exc
    except Exception as exc:  # noqa: BLE001 - CuPy's import can fail in many ways
        raise DeviceError(f"CuPy failed to import: {type(exc).__name__}: {exc}") from exc
    return cupy


def _visible() -> str:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if cvd is None else f" (CUDA_VISIBLE_DEVICES={cvd!r})"


def device_count(cp: Any) -> int:
    """How many GPUs CUDA shows this process; ``DeviceError`` with CUDA's message if none."""
    try:
        count = int(cp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, or a driver that will not load
        raise DeviceError(
            f"device 'cuda': CuPy {getattr(cp, '__version__', '?')} finds no "
            f"usable GPU{_visible()}. CUDA says: {exc}. Check the NVIDIA driver (nvidia-smi) and "
            "that the CuPy wheel matches it (cupy-cuda12x for a CUDA 12 driver)"
        ) from exc
    if count < 1:
        raise DeviceError(f"device 'cuda': CUDA sees no GPU{_visible()}")
    return count


def cuda_libraries(cp: Any) -> Any:
    """CuPy's cuBLAS module, after checking that cuBLAS and NVRTC (which compiles the fused
    kernels) load; a ``DeviceError`` naming the missing library and how to install it if not.

    CuPy wheels take these libraries from a local CUDA toolkit or from PyPI (``[ctk]``).
    """
    try:
        cublas = getattr(cp, "cublas", None) or importlib.import_module("cupy.cublas")
        cp.cuda.nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError, or the loader's own error
        raise DeviceError(
            f"device 'cuda': CuPy {getattr(cp, '__version__', '?')} cannot load a CUDA library "
            f"it needs ({exc}). Install the CUDA toolkit, or its libraries from PyPI: "
            'pip install "cupy-cuda12x[ctk]" (what "./backends/cupy[cuda12]" installs)'
        ) from exc
    return cublas


def cuda_version(v: int) -> str:
    """CUDA's integer version ``12090`` as ``12.9``."""
    v = int(v)
    return "none" if v == 0 else f"{v // 1000}.{(v % 1000) // 10}"


def graphs_from_env() -> bool:
    """``$FASTBP_CUDA_GRAPHS``: ``0``/``false``/``off``/``no`` turn graph capture off."""
    return os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


class CuPyBackend(Backend):
    """The ``cuda`` / ``cuda:N`` device (``N`` counts the GPUs ``CUDA_VISIBLE_DEVICES`` shows)."""

    name = "cuda"
    kind = "gpu"
    # When to capture (estimates from the kernels' design, to be tuned on a GPU): small batches
    # of small networks, where launches cost more than the work; cuBLAS wins beyond.
    graph_max_batch = 128        # batch sizes up to this
    graph_max_weights = 262_144  # networks with at most this many weights Σ n_l n_{l-1}
    graph_steps = 50             # steps per captured graph

    def __init__(self, dtype: str = "float32", index: int = 0, *,
                 graphs: bool | None = None) -> None:
        cp = import_cupy()
        count = device_count(cp)
        if index >= count:
            last = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise DeviceError(
                f"device 'cuda:{index}' is out of range: {count} GPU{'s' if count != 1 else ''} "
                f"visible here{_visible()}, so use {last}"
            )
        super().__init__(cp, dtype=dtype, index=index)
        self.cp = cp
        self._cublas = cuda_libraries(cp)
        self._device = cp.cuda.Device(index)
        self._graphs_flag = graphs
        self._captured: OrderedDict[tuple, CapturedEpoch] = OrderedDict()
        self._ones: dict[int, Array] = {}
        self._gemm_ok = self.dtype in ("float32", "float64")
        self.graph_error: str | None = None  # why capture failed, once it has
        self.last_epoch_path: str | None = None  # "graph" or "eager", for tests and benchmarks

    @property
    def graphs(self) -> bool:
        """Whether small-batch steps are captured as CUDA graphs (flag, else the environment)."""
        if self._graphs_flag is not None:
            return bool(self._graphs_flag)
        return graphs_from_env()

    # -- identity ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Run the block with this backend's GPU as CuPy's current device."""
        with self._device:
            yield

    def memory_info(self) -> tuple[int, int]:
        """``(free, total)`` bytes of this GPU."""
        with self._device:
            free, total = self.cp.cuda.runtime.memGetInfo()
        return int(free), int(total)

    def describe(self) -> dict[str, Any]:
        cp = self.cp
        props = cp.cuda.runtime.getDeviceProperties(self.index)
        model = props.get("name", b"?")
        model = model.decode() if isinstance(model, bytes) else str(model)
        free, total = self.memory_info()
        info = super().describe()
        info.update(
            model=model, memory=total, memory_free=free,
            compute_capability=f"{props.get('major', '?')}.{props.get('minor', '?')}",
            cupy=cp.__version__,
            cuda_runtime=cuda_version(cp.cuda.runtime.runtimeGetVersion()),
            cuda_driver=cuda_version(cp.cuda.runtime.driverGetVersion()),
            graphs="on" if self.graphs else "off",
        )
        return info

    @classmethod
    def probe(cls) -> list[dict[str, Any]]:
        """Every GPU CUDA shows this process."""
        count = device_count(import_cupy())
        return [cls(dtype="float32", index=i).describe() for i in range(count)]

    # -- moving arrays ----------------------------------------------------------------------
    def asarray(self, a: Any, dtype: str | None = None) -> Array:
        with self._device:
            return self.cp.asarray(a, dtype=dtype or self.dtype)

    def to_numpy(self, a: Array) -> np.ndarray:
        return self.cp.asnumpy(a) if isinstance(a, self.cp.ndarray) else np.asarray(a)

    def is_native(self, a: Any) -> bool:
        return isinstance(a, self.cp.ndarray)

    def check_device(self, a: Any, name: str = "X", *, host: bool = False) -> Any:
        if self.is_native(a) and a.device.id != self.index:
            raise DeviceError(
                f"{name} is on cuda:{a.device.id}, but the network is on {self.device!r}: copy it "
                f"with `with cupy.cuda.Device({self.index}): x = cupy.array(x)`, or move the "
                f"network with net.to('cuda:{a.device.id}')"
            )
        return super().check_device(a, name, host=host)

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        with self._device:
            return self.cp.empty(shape, dtype=dtype or self.dtype)

    def zeros(self, shape: tuple[int, ...], dtype: str | None = None) -> Array:
        with self._device:
            return self.cp.zeros(shape, dtype=dtype or self.dtype)

    def copy_into(self, dst: Array, src: Any) -> None:
        with self._device:
            dst[...] = self.cp.asarray(src, dtype=dst.dtype)

    def synchronize(self) -> None:
        self._device.synchronize()

    def index_array(self, order: np.ndarray) -> Array:
        with self._device:
            return self.cp.asarray(np.asarray(order, dtype=np.int64))

    # -- products on cuBLAS ---------------------------------------------------------------
    def _gemm(self, ta: str, tb: str, a: Array, b: Array, out: Array, alpha: float = 1.0,
              beta: float = 0.0) -> Array:
        """``out = alpha op(a) op(b) + beta out`` on cuBLAS (any C/F-contiguous layout)."""
        return self._cublas.gemm(ta, tb, a, b, out=out, alpha=alpha, beta=beta)

    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a b``."""
        if self._gemm_ok:
            return self._gemm("N", "N", a, b, out)
        return self.cp.matmul(a, b, out=out)

    def matmul_nt(self, a: Array, b: Array, out: Array) -> Array:
        """``out = a bᵀ``."""
        if self._gemm_ok:
            return self._gemm("N", "T", a, b, out)
        return self.cp.matmul(a, b.T, out=out)

    def matmul_tn(self, a: Array, b: Array, out: Array) -> Array:
        """``out = aᵀ b``."""
        if self._gemm_ok:
            return self._gemm("T", "N", a, b, out)
        return self.cp.matmul(a.T, b, out=out)

    # -- fused elementwise kernels --------------------------------------------------------
    def sigmoid(self, z: Array, out: Array) -> Array:
        """``out = σ(z)``: one kernel."""
        K.elementwise(self.cp, "sigmoid")(z, out)
        return out

    def bias_sigmoid(self, z: Array, b: Array) -> Array:
        """In place ``z ← σ(z + b)``: one kernel (feedforward after the GEMM ``W a^{l-1}``)."""
        K.elementwise(self.cp, "bias_sigmoid")(b, z)
        return z

    def sigmoid_prime(self, a: Array, out: Array) -> Array:
        """``out = a ⊙ (1 − a)``: one kernel."""
        K.elementwise(self.cp, "sigmoid_prime")(a, out)
        return out

    def mul_sigmoid_prime(self, x: Array, a: Array, scratch: Array) -> Array:
        """In place ``x ← x ⊙ a ⊙ (1 − a)``: the hadamard of BP1/BP2 in one kernel."""
        K.elementwise(self.cp, "mul_sigmoid_prime")(a, x)
        return x

    # -- the SGD step, folded into the weight- and bias-gradient products ------------------
    def _ones_column(self, m: int) -> Array:
        ones = self._ones.get(m)
        if ones is None:
            ones = self._ones[m] = self.cp.ones((m, 1), dtype=self.dtype)
        return ones

    def sgd_weights(self, w: Array, delta: Array, a_prev: Array, alpha: float, beta: float,
                    scratch: Array) -> None:
        """BP4 + SGD: ``W ← β W − α δ (a^{l-1})ᵀ`` as one GEMM writing ``W`` in place."""
        if self._gemm_ok and (w.flags.c_contiguous or w.flags.f_contiguous):
            self._gemm("N", "T", delta, a_prev, w, alpha=-alpha, beta=beta)
            return
        self.matmul_nt(delta, a_prev, out=scratch)
        K.elementwise(self.cp, "sgd_update")(scratch, alpha, beta, w)

    def sgd_biases(self, b: Array, delta: Array, alpha: float, scratch: Array) -> None:
        """BP3 + SGD: ``b ← b − α δ 1`` (the row sums of δ) as one GEMM writing ``b``."""
        if self._gemm_ok and b.flags.c_contiguous:
            self._gemm("N", "N", delta, self._ones_column(int(delta.shape[1])), b,
                       alpha=-alpha, beta=1.0)
            return
        self.sum_columns(delta, out=scratch)
        K.elementwise(self.cp, "sgd_update")(scratch, alpha, 1.0, b)

    # -- a whole epoch --------------------------------------------------------------------
    def sgd_epoch(self, plan: Any) -> Any:
        """One epoch over ``plan.order``; the summed cost as a device scalar (nothing waits).

        Full mini-batches of size ``≤ graph_max_batch`` replay a captured graph; the rest (a
        last partial batch, large batches, custom costs, graphs off) run the eager step.
        """
        n, m = int(plan.order.shape[0]), int(plan.batch_size)
        full = n // m
        with self._device:
            if self._graph_worthwhile(plan, full):
                captured = self._capture(plan, m, full)
                if captured is not None:
                    self.last_epoch_path = "graph"
                    total = captured.run(plan.order, full)
                    if full * m < n:
                        total = total + self._eager_steps(plan, full * m)
                    return total
            self.last_epoch_path = "eager"
            return self._eager_steps(plan, 0)

    def _graph_worthwhile(self, plan: Any, full: int) -> bool:
        """Graphs on, never failed here, and a step small enough for launches to dominate."""
        weights = sum(int(w.shape[0]) * int(w.shape[1]) for w in plan.weights)
        return (self.graphs and self.graph_error is None and full > 0
                and plan.batch_size <= self.graph_max_batch
                and weights <= self.graph_max_weights)

    def _capture(self, plan: Any, m: int, steps: int) -> CapturedEpoch | None:
        """The captured step for this plan (cached) with graphs for ``steps`` steps, or
        ``None`` to go eager: the plan cannot be captured (a custom cost, float16), or the
        capture failed (then graphs stay off on this backend, said in one warning)."""
        alpha, beta = plan.eta / m, plan.decay
        arrays = [*plan.weights, *plan.biases, plan.xs, plan.ys]
        # The arrays by identity: a cached graph holds them, so an id is never reused meanwhile.
        key = (m, alpha, beta, plan.cost, tuple(id(a) for a in arrays))
        captured = self._captured.get(key)
        try:
            if captured is None:
                program = StepProgram(self.cp, plan.weights, plan.biases, plan.xs, plan.ys,
                                      plan.cost, m, alpha, beta)
                captured = CapturedEpoch(self.cp, program, self.graph_steps)
            captured.prepare(steps)
        except NotCapturable:
            return None
        except Exception as exc:  # noqa: BLE001 - any capture failure: train eagerly
            self.graph_error = f"{type(exc).__name__}: {exc}"
            log.warning("fastbp: CUDA graph capture failed on %s (%s); training without graphs",
                        self.device, self.graph_error)
            return None
        self._captured[key] = captured
        self._captured.move_to_end(key)
        while len(self._captured) > 2:  # each holds its buffers (and the data set) alive
            self._captured.popitem(last=False)
        return captured

    def _eager_steps(self, plan: Any, start: int) -> Array:
        """The steps over ``plan.order[start:]``, eagerly (the generic loop on this backend's
        fused ops); the summed cost stays on the device as a float64 scalar."""
        return training.sgd_epoch(self, plan, start, self.cp.zeros((), dtype=self.cp.float64))
