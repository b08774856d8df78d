"""``CuPyBackend``: the ``cuda`` device. The equations on CuPy arrays, products on cuBLAS.

The device in three ideas: finding CuPy and the GPU (:mod:`fastbp_cupy.probe`), the operations
of the device contract on CuPy arrays (this module), and how an epoch runs, graph, eager or
generic (:mod:`fastbp_cupy.epoch`); the programs themselves are in :mod:`.graph`,
:mod:`.eager` and :mod:`.kernels`.

CuPy is imported when the backend is built (``device="cuda"``), never at ``import fastbp`` or
when the plugin's entry point is loaded; every way that can fail becomes a ``DeviceError`` that
keeps CuPy's or CUDA's own message and says what to do. Building the backend compiles and runs
one trivial kernel, so a CuPy that cannot compile (no CUDA headers) says so there.

An epoch (:meth:`CuPyBackend.sgd_epoch`) runs one of three paths:

* **graph**: the step captured once as CUDA graphs of raw kernels and replayed
  (:mod:`fastbp_cupy.graph`); ``graphs=False`` or ``FASTBP_CUDA_GRAPHS=0`` turns it off;
* **eager**: cuBLAS products with the SGD update folded in, fused elementwise kernels, and a raw
  kernel for BP1 and the cost (:mod:`fastbp_cupy.eager`); nothing is allocated per step;
* **generic** (custom costs, float16): the core's loop on this backend's operations.

Between graph and eager the planner chooses per configuration (:mod:`fastbp_cupy.planning`):
measured on this GPU on the first epoch and cached, or by the estimates below
(``FASTBP_PLAN=off``: graphs for small batches of small networks, where launches cost more than
the work).

Chapter 3's momentum, L1 and dropout run on the graph and eager paths too, with their own
kernels (:mod:`fastbp_cupy.kernels`): the dropout masks of a captured step are drawn inside the
graph from the epoch's seed and the step counter in device memory, so replays need no host work
per step.

The data set stays on the device sample-major; mini-batches are gathered there; the epoch's
cost is summed on the device and read once. Programs and graphs are built per training plan and
kept on it, so they, and the data set their graphs point at, are freed with the plan. A capture
that fails falls back to the eager step with one warning; one that runs out of memory only
skips graphs for that epoch.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

import numpy as np

from fastbp.devices import Array, Backend, planner
from fastbp.errors import DeviceError

from . import kernels as K
from . import planning
from .epoch import EpochPaths, out_of_memory, plan_programs  # noqa: F401 - re-exported
from .neurons import NeuronKernels
from .probe import (  # noqa: F401 - re-exported: the plugin's names as they have always been
    GRAPHS_ENV,
    INSTALL,
    _visible,
    compile_probe,
    cuda_libraries,
    cuda_version,
    device_count,
    graphs_from_env,
    import_cupy,
)

log = logging.getLogger("fastbp")


class CuPyBackend(NeuronKernels, EpochPaths, Backend):
    """The ``cuda`` / ``cuda:N`` device (``N`` counts the GPUs ``CUDA_VISIBLE_DEVICES`` shows)."""

    name = "cuda"
    kind = "gpu"
    staged_arrays = True  # CuPy arrays: reduced through host buffers or CUDA-aware MPI
    host_memory = False
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
        compile_probe(cp, self._device)
        self._graphs_flag = graphs
        self._ones: dict[int, Array] = {}
        self._gemm_ok = self.dtype in ("float32", "float64")
        self.graph_error: str | None = None  # why capture failed for good, once it has
        self.graph_skipped: str | None = None  # why the last epoch could not capture (memory)
        self.raw_error: str | None = None  # why the raw kernels cannot run here, if they cannot
        self.last_epoch_path: str | None = None  # "graph", "eager" or "generic"
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

    def free_bytes(self) -> int:
        """Bytes free on this GPU, counting what CuPy's memory pool holds unused."""
        free, _ = self.memory_info()
        return free + int(self.cp.get_default_memory_pool().free_bytes())

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
            plans=self._plans_summary(),
        )
        return info

    def _plans_summary(self) -> str:
        """How graph or eager is chosen here, and the plans cached for this GPU."""
        off = self.graphs_off_reason()
        if off is not None:
            return f"eager ({off})"
        how = planner.mode()
        if how == "off":
            return (f"estimates (FASTBP_PLAN=off: graph for batches ≤ {self.graph_max_batch} of "
                    f"≤ {self.graph_max_weights:,} weights)")
        if how not in planner.MODES:
            return f"{how} (FASTBP_PLAN)"
        cached = planner.read_cache(planning.fingerprint(self), planning.SECTION)
        mine = sorted(k for k in cached if k.split(" ")[0] == self.device)
        held = ", ".join(f"{k[len(self.device) + 1:]}: {cached[k].get('choice')}"
                         for k in mine[:4])
        more = f", and {len(mine) - 4} more" if len(mine) > 4 else ""
        return (f"graph or eager measured per configuration; {len(mine)} cached"
                + (f" ({held}{more})" if mine else ""))

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

    def gradient_reducer(self, comm: Any, flat: Array | None) -> Any:
        """Distributed training sums gradients with NCCL when CuPy has it (:mod:`.nccl`)."""
        from .nccl import NcclReducer, nccl_available

        return NcclReducer(comm, self.dtype) if nccl_available() else None
