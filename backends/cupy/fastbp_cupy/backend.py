"""``CuPyBackend``: the ``cuda`` device. The equations on CuPy arrays, products on cuBLAS.

Why one module of this size: it is the device's whole life cycle (import and checks, the Ops
operations, the choice between graph, eager and generic epochs, and memory), each part a few
short methods of one class; the programs themselves are in :mod:`.graph`, :mod:`.eager` and
:mod:`.kernels`.

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
import importlib
import logging
import os
from typing import Any, Iterator

import numpy as np

from fastbp.core.memory import translate_oom
from fastbp.core.neurons import kinds_of
from fastbp.core.validate import env_flag
from fastbp.devices import Array, Backend, planner
from fastbp.devices.registry import SHIPPED_PLUGINS, no_driver_reason
from fastbp.errors import DeviceError

from . import kernels as K
from . import planning
from .eager import EagerProgram
from .graph import (
    Accumulator,
    CapturedEpoch,
    NotCapturable,
    StepProgram,
    check_arrays,
    cost_kind,
)
from .neurons import NeuronKernels

log = logging.getLogger("fastbp")

INSTALL = SHIPPED_PLUGINS["cuda"]  # the one install command, as fastbp devices and the README say
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
        plain = no_driver_reason(str(exc))  # "insufficient driver" where there is none at all
        if plain is not None:
            raise DeviceError(plain) from exc
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


HEADERS_HINT = ("CuPy compiles its kernels with NVRTC and needs the CUDA headers for that: "
                'pip install "cupy-cuda12x[ctk]" (or "cupy-cuda13x[ctk]"; what '
                '"./backends/cupy[cuda12]" installs), or install the CUDA toolkit and set '
                "CUDA_PATH to it")


def compile_probe(cp: Any, device: Any) -> None:
    """Compile and run one trivial ``ElementwiseKernel`` on ``device``, the way every fused
    kernel of this backend is built; a ``DeviceError`` naming the cause if that fails.

    CuPy compiles kernels when they are first called, and each needs the CUDA headers: without
    them (``cupy-cuda12x`` without ``[ctk]`` and no toolkit) the first training step would die
    with a bare ``RuntimeError``. Here the failure is found when the backend is built.
    """
    try:
        with device:
            x = cp.zeros((1,), dtype=np.float32)
            y = cp.empty((1,), dtype=np.float32)
            K.elementwise(cp, "probe")(x, y)
            value = float(cp.asnumpy(y)[0])
    except Exception as exc:  # noqa: BLE001 - NVRTC, header and driver errors alike
        msg = f"{type(exc).__name__}: {exc}"
        headers = any(s in msg for s in ("CUDA headers", "cuda_fp16.h", "cuda_runtime.h",
                                         "cannot open source file", "CUDA_PATH"))
        what = ("cannot find the CUDA headers it needs to compile kernels" if headers
                else "cannot compile or run a kernel")
        raise DeviceError(
            f"device 'cuda:{getattr(device, 'id', '?')}': CuPy {getattr(cp, '__version__', '?')} "
            f"{what} ({msg}). {HEADERS_HINT}"
        ) from exc
    if value != 1.0:
        raise DeviceError(
            f"device 'cuda:{getattr(device, 'id', '?')}': a trivial kernel computed 0 + 1 = "
            f"{value}; this GPU or its driver does not run CuPy's kernels correctly"
        )


def cuda_version(v: int) -> str:
    """CUDA's integer version ``12090`` as ``12.9``."""
    v = int(v)
    return "none" if v == 0 else f"{v // 1000}.{(v % 1000) // 10}"


def graphs_from_env() -> bool:
    """``$FASTBP_CUDA_GRAPHS``: ``0``/``false``/``off``/``no`` turn graph capture off; a value
    that is no yes or no is a ``ConfigError`` naming the variable."""
    return env_flag(GRAPHS_ENV, True)


class CuPyBackend(NeuronKernels, Backend):
    """The ``cuda`` / ``cuda:N`` device (``N`` counts the GPUs ``CUDA_VISIBLE_DEVICES`` shows)."""

    name = "cuda"
    kind = "gpu"
    staged_arrays = True  # CuPy arrays: reduced through host buffers or CUDA-aware MPI
    # The planner's default between graph and eager (FASTBP_PLAN=off, and what a measured
    # candidate must beat), estimated from the kernels' design: small batches of small networks,
    # where launches cost more than the work; cuBLAS wins beyond.
    graph_max_batch = 128        # batch sizes up to this
    graph_max_weights = 262_144  # networks with at most this many weights Σ n_l n_{l-1}
    graph_steps = 50             # steps per captured graph
    # Fill every work buffer of the graph and eager programs with NaN when it is allocated, so a
    # kernel that reads what no kernel wrote shows up at once (the GPU checks set it).
    poison_buffers = False

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

    @property
    def graphs(self) -> bool:
        """Whether steps may be captured as CUDA graphs (flag, else the environment)."""
        if self._graphs_flag is not None:
            return bool(self._graphs_flag)
        return graphs_from_env()

    def graphs_off_reason(self) -> str | None:
        """Why every epoch runs eager without planning (``graphs=False``,
        ``FASTBP_CUDA_GRAPHS=0``, a capture that failed here), or ``None``."""
        if self._graphs_flag is not None:
            return None if self._graphs_flag else "graphs=False"
        if not graphs_from_env():
            return f"{GRAPHS_ENV}={os.environ.get(GRAPHS_ENV, '').strip()}"
        if self.graph_error is not None:
            return f"fallback: capture failed here ({self.graph_error})"
        return None

    def graph_estimate(self, plan: Any) -> bool:
        """The estimate the planner starts from: whether ``plan``'s step is small enough for
        launches to dominate (batches ≤ ``graph_max_batch``, ≤ ``graph_max_weights`` weights)."""
        weights = sum(int(w.shape[0]) * int(w.shape[1]) for w in plan.weights)
        return (int(plan.batch_size) <= self.graph_max_batch
                and weights <= self.graph_max_weights)

    def plan_for(self, plan: Any) -> planner.Choice:
        """How epochs of ``plan`` will run here (:func:`fastbp_cupy.planning.choose`): ``graph``
        or ``eager``, cached, forced, the default, or the fastest in a trial now; ``generic``
        where the raw kernels do not take the plan (a custom cost, float16)."""
        with self._device:
            if not (self._raw_kernels_apply(plan) and self._raw_kernels_load(plan)):
                return planner.Choice("generic", "the raw kernels do not take this plan")
            return planning.choose(self, plan, self._trial_epoch)

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

    # -- a whole epoch --------------------------------------------------------------------
    def sgd_epoch(self, plan: Any) -> Any:
        """One epoch over ``plan.order``: the summed cost as a device scalar (nothing waits), or
        ``None`` for the generic loop (a custom cost, float16).

        The plan (:mod:`fastbp_cupy.planning`) says whether the full mini-batches replay a
        captured graph; the rest (a last partial batch, an ``eager`` plan) run the eager step.
        A plan whose graph cannot be captured falls back to eager, said in one warning.
        """
        with self._device:
            if not (self._raw_kernels_apply(plan) and self._raw_kernels_load(plan)):
                self.last_epoch_path = "generic"
                return None
            choice = planning.choose(self, plan, self._trial_epoch)
            total = self._epoch(plan, choice.name)
            if choice.name == "graph" and self.graph_error is not None:
                planning.fall_back(choice)
            return total

    def _trial_epoch(self, plan: Any, candidate: str) -> Any:
        """One epoch of a planner's trial plan as ``candidate``: a capture that fails raises
        (the planner leaves the candidate out) instead of turning graphs off."""
        with self._device:
            total = self._epoch(plan, candidate, trial=True)
        if candidate == "graph" and self.last_epoch_path != "graph":
            raise NotCapturable("the step was not captured")
        return total

    def _epoch(self, plan: Any, candidate: str, *, trial: bool = False) -> Any:
        """One epoch of ``plan`` as ``candidate`` (``graph`` or ``eager``); the summed cost as
        a device scalar. In a ``trial`` a failed capture raises."""
        n, m = int(plan.order.shape[0]), int(plan.batch_size)
        full = n // m
        programs = plan_programs(plan)
        acc = programs.get("acc")
        if acc is None:
            with translate_oom(self, plan.sizes, m):
                acc = programs["acc"] = Accumulator(self.cp)
        captured = None
        if candidate == "graph" and self.graph_error is None and full > 0:
            captured = self._captured(plan, programs, acc, m, full, strict=trial)
        first = full * m if captured is not None else 0
        # every program the epoch needs exists before its first step runs
        eager = [(self._eager(plan, programs, acc, size), start, stop)
                 for size, start, stop in _batches(first, n, m)]
        acc.cost.fill(0)
        if captured is not None:
            captured.run(plan.order, full, plan.seed, plan.first_step)
        for program, start, stop in eager:
            program.run(plan, start, stop)
        self.last_epoch_path = "graph" if captured is not None else "eager"
        return acc.cost[0].copy()

    def _raw_kernels_apply(self, plan: Any) -> bool:
        """Whether the raw kernels take this plan (a built-in cost; float32/float64; velocities
        like the parameters; dropout on σ, tanh or relu hidden layers)."""
        try:
            check_arrays(plan.weights, plan.biases, plan.xs, plan.ys)
            if plan.velocities is not None:
                check_arrays(plan.velocities, [], plan.xs, plan.ys)
            cost_kind(plan.cost)
        except NotCapturable:
            return False
        if plan.dropout:
            hidden = kinds_of(plan.kinds, len(plan.weights))[:-1]
            return all(kind in K.PRIME_KIND for kind in hidden)
        return True

    def _raw_kernels_load(self, plan: Any) -> bool:
        """Whether the raw kernels compile and load here; if not, said in one warning, and
        this backend trains with the generic loop from then on."""
        if self.raw_error is None:
            real = "float" if str(plan.xs.dtype) == "float32" else "double"
            try:
                K.raw_functions(self.cp, real, self.index)
            except Exception as exc:  # noqa: BLE001 - NVRTC or loader errors alike
                self.raw_error = f"{type(exc).__name__}: {exc}"
                log.warning("fastbp: the raw CUDA kernels do not build on %s (%s); training "
                            "with the generic loop", self.device, self.raw_error)
        return self.raw_error is None

    def _captured(self, plan: Any, programs: dict, acc: Accumulator, m: int,
                  steps: int, *, strict: bool = False) -> CapturedEpoch | None:
        """The plan's captured step with graphs for ``steps`` steps, or ``None`` to go eager.

        A capture that runs out of GPU memory skips graphs for this epoch only (said once, the
        next epoch tries again); any other failure turns graphs off on this backend, said in
        one warning. ``strict`` (a planner's trial): any failure raises.
        """
        alpha, beta = plan.eta / m, plan.decay
        key = ("graph", m, alpha, beta, plan.cost, plan.kinds, _identity(plan),
               _techniques(plan))
        captured = programs.get(key)
        try:
            if captured is None:
                program = StepProgram(self.cp, plan.weights, plan.biases, plan.xs, plan.ys,
                                      plan.cost, m, alpha, beta, acc=acc,
                                      poison_buffers=self.poison_buffers, kinds=plan.kinds,
                                      velocities=plan.velocities, mu=plan.mu,
                                      l2=plan.l2_step, l1=plan.l1_step, dropout=plan.dropout)
                captured = CapturedEpoch(self.cp, program, self.graph_steps, self.index)
            captured.prepare(steps)
        except NotCapturable:
            if strict:
                raise
            return None
        except Exception as exc:  # noqa: BLE001 - any capture failure: train eagerly
            programs.pop(key, None)
            reason = f"{type(exc).__name__}: {exc}"
            if out_of_memory(exc):
                self._release_pool()
            if strict:
                raise
            if out_of_memory(exc):
                if self.graph_skipped is None:
                    log.warning("fastbp: not enough GPU memory on %s to capture the step (%s); "
                                "this epoch trains without graphs, the next one tries again",
                                self.device, reason)
                self.graph_skipped = reason
                return None
            self.graph_error = reason
            log.warning("fastbp: CUDA graph capture failed on %s (%s); the plan falls back to "
                        "eager: training without graphs", self.device, self.graph_error)
            return None
        _remember(programs, key, captured)
        self.graph_skipped = None
        return captured

    def _eager(self, plan: Any, programs: dict, acc: Accumulator, m: int) -> EagerProgram:
        """The plan's eager program for batches of ``m`` (built on first use)."""
        key = ("eager", m, plan.cost, plan.kinds, _identity(plan), plan.dropout)
        program = programs.get(key)
        if program is None:
            with translate_oom(self, plan.sizes, m):  # MemoryError -> DeviceError with numbers
                program = EagerProgram(self, plan, m, acc, poison_buffers=self.poison_buffers)
        _remember(programs, key, program)
        return program

    def _release_pool(self) -> None:
        """Give the blocks CuPy's pool holds unused back to the driver."""
        with contextlib.suppress(Exception):
            self.cp.get_default_memory_pool().free_all_blocks()


PLAN_ATTRIBUTE = "_fastbp_cuda_programs"
PROGRAMS_PER_PLAN = 6  # besides the accumulator: graph + eager (full and last batch), with room


def plan_programs(plan: Any) -> dict:
    """The programs (buffers, captured graphs) this backend built for ``plan``.

    They are kept on the plan object itself: they hold raw pointers to its parameters and data
    set, so they must live as long as those, and no longer. When ``Network.train`` returns, its
    plan is dropped and the graphs, their buffers and the uploaded data set are freed with it; no
    cache on the backend keeps a stale data set alive or recaptures for an array's ``id``.
    """
    programs = getattr(plan, PLAN_ATTRIBUTE, None)
    if programs is None:
        programs = {}
        try:
            setattr(plan, PLAN_ATTRIBUTE, programs)
        except AttributeError:  # a plan that takes no attributes: build per call
            log.debug("fastbp: cannot keep CUDA programs on %s", type(plan).__name__)
    return programs


def _identity(plan: Any) -> tuple[int, ...]:
    """The plan's arrays by identity (a program holds them, so no id is reused meanwhile)."""
    return tuple(id(a) for a in (*plan.weights, *plan.biases, plan.xs, plan.ys,
                                 *(plan.velocities or ())))


def _techniques(plan: Any) -> tuple[Any, ...]:
    """What a captured step freezes of chapter 3's techniques: ``μ``, ``ηλ/n``, ``ηλ₁/n`` and
    the dropout ``p`` (the velocities are in :func:`_identity`; the seed is device memory)."""
    if plan.plain:
        return ()
    return (plan.velocities is not None, plan.mu, plan.l2_step, plan.l1_step, plan.dropout)


def _remember(programs: dict, key: tuple, program: Any) -> None:
    programs.pop(key, None)
    programs[key] = program  # the newest last
    keys = [k for k in programs if k != "acc"]
    for old in keys[:-PROGRAMS_PER_PLAN]:
        del programs[old]


def _batches(first: int, n: int, m: int) -> list[tuple[int, int, int]]:
    """``(batch size, start, stop)`` for the full batches of ``order[first:n]`` and the last,
    shorter one."""
    stop = first + (n - first) // m * m
    runs = [(m, first, stop)] if stop > first else []
    if stop < n:
        runs.append((n - stop, stop, n))
    return runs


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the GPU ran out of memory (CuPy's ``OutOfMemoryError`` is a
    ``MemoryError``; CUDA's own says ``cudaErrorMemoryAllocation``)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "cudaErrorMemoryAllocation" in text or "out of memory" in text.lower()
