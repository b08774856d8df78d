"""Data-parallel training over MPI (mpi4py), exact to the single-process result.

The cost is the average of per-sample costs (the book's assumption 1), so the gradient of a
mini-batch of ``m`` samples is the sum of the gradients of any split of it. With ``p`` ranks, rank
``r`` takes a contiguous share of every global mini-batch, computes ``Σ_x ∂C_x/∂W^l`` (BP4) and
``Σ_x ∂C_x/∂b^l`` (BP3) over its share into views of one flat buffer, and one
``Allreduce(IN_PLACE, flat, SUM)`` per step gives every rank the whole batch's sums. Every rank
then applies the same update ``W^l ← (1 − ηλ/n) W^l − (η/m) Σ_x ∂C_x/∂W^l`` (same for ``b^l``,
without the decay), so the parameters stay identical on every rank and equal to one process's.

The sample order of each epoch comes from the network's generator, made identical on every rank
at the start (broadcast from rank 0) and drawn exactly as :meth:`fastbp.Network.train` draws it
(one ``permutation(n)`` per epoch), so ``N`` ranks see exactly the mini-batches one process sees.

mpi4py is imported only when a function here needs it (``pip install "fastbp[mpi]"``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import time
import traceback
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import devices
from ..core.equations import backpropagate, bp3, bp4, feedforward
from ..core.evaluator import Evaluator
from ..core.guard import DivergenceGuard
from ..core.records import EpochRecord, History, format_record
from ..core.validate import check_batch, check_count, check_labels, check_positive
from ..devices.backend import Array, Backend
from ..errors import ConfigError, FastbpError
from ..model.inputs import samples_major, targets_major
from ..model.network import Network

INSTALL_HINT = 'pip install "fastbp[mpi]"  (mpi4py and MPICH from PyPI)'
REDUCTION_ENV = "FASTBP_MPI_REDUCTION"
ABORT_GRACE_S = 0.5
# How the gradients of device arrays are summed, best first; "mpi" is host (NumPy) arrays.
GPU_PATHS = ("nccl", "cuda-aware-mpi", "host")
PATHS = ("mpi", *GPU_PATHS, "unavailable")


class DistributedError(FastbpError, RuntimeError):
    """MPI is missing, or the ranks disagree (data, options or parameters)."""


def mpi() -> Any:
    """The ``mpi4py.MPI`` module (initialises MPI on first use)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"distributed training needs mpi4py: {INSTALL_HINT}") from exc
    return MPI


def world() -> Any:
    """``MPI.COMM_WORLD``."""
    return mpi().COMM_WORLD


def shard(m: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``m`` items split over ``size`` ranks.

    The first ``m mod size`` ranks take ``⌊m/size⌋ + 1`` items, the others ``⌊m/size⌋`` (zero
    when ``m < size``); the shares tile ``[0, m)`` in rank order.
    """
    q, extra = divmod(m, size)
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (1 if rank < extra else 0)


# -- failure: one rank's exception stops the whole job -------------------------------------
@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """Within the block, an exception on any rank prints a message naming the rank and calls
    ``MPI.COMM_WORLD.Abort(1)``, so no other rank waits forever in a collective.

    With a single process (no ``mpiexec``, or ``-n 1``) the exception propagates as usual.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        MPI = sys.modules.get("mpi4py.MPI")
        if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
            raise
        comm = MPI.COMM_WORLD
        if comm.Get_size() <= 1:
            raise
        rank, size = comm.Get_rank(), comm.Get_size()
        text = f"fastbp: rank {rank} of {size} failed: {type(exc).__name__}: {exc}\n"
        if not isinstance(exc, FastbpError):
            text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        text += f"fastbp: aborting all {size} ranks (MPI_Abort)\n"
        with contextlib.suppress(Exception):
            sys.stderr.write(text)
            sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)  # let the launcher forward the message before the teardown
        comm.Abort(1)
        os._exit(1)  # some MPI libraries return from MPI_Abort; never fall back into Python


# -- devices: one GPU per rank, and how gradients are summed -------------------------------
def local_rank(comm: Any = None) -> int:
    """This rank's index among the ranks on the same node (``COMM_TYPE_SHARED``)."""
    MPI = mpi()
    comm = comm if comm is not None else MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


def gpu_count() -> int:
    """How many CUDA GPUs CuPy sees here (respecting ``CUDA_VISIBLE_DEVICES``); 0 without."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no GPU: all mean zero GPUs
        return 0


def rank_device(device: str | None = None, comm: Any = None) -> str:
    """The device this rank should use: ``cuda`` and ``auto`` become ``cuda:(local_rank mod
    gpu_count)`` when GPUs are visible; an explicit ``cuda:N`` or ``cpu`` stays as given."""
    spec = devices.requested_device(device)
    name, _ = devices.parse_device(spec)
    if name in ("cuda", "auto") and ":" not in spec:
        count = gpu_count()
        if count:
            return f"cuda:{local_rank(comm) % count}"
    return spec


def cuda_aware_mpi() -> bool:
    """Whether the MPI library in use reports CUDA support (``MPIX_Query_cuda_support``, which
    MPICH and Open MPI export); False where the library cannot say."""
    MPI = mpi()
    if not MPI.Is_initialized():  # pragma: no cover - importing mpi4py.MPI initialises it
        return False
    try:
        with open("/proc/self/maps") as maps:
            libs = sorted({line.split()[-1] for line in maps if "/libmpi" in line})
    except OSError:
        libs = []
    for path in libs or [None]:
        try:
            fn = ctypes.CDLL(path).MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        return bool(fn())
    return False


def _nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 - CuPy missing or built without NCCL
        return False
    return bool(getattr(nccl, "available", True))


def _backend_path(backend: Backend) -> str:
    """The reduction path for arrays of ``backend`` (before the ranks agree on one)."""
    if backend.xp is np:
        return "mpi"
    if getattr(backend.xp, "__name__", "") != "cupy":
        raise DistributedError(
            f"distributed training runs on NumPy or CuPy arrays (devices cpu, cpu-jit, cuda); "
            f"device {backend.device!r} computes with {getattr(backend.xp, '__name__', '?')}")
    forced = os.environ.get(REDUCTION_ENV)
    if forced:
        if forced not in GPU_PATHS:
            raise DistributedError(f"{REDUCTION_ENV}={forced!r}: use one of {', '.join(GPU_PATHS)}")
        return forced
    if _nccl_available():
        return "nccl"
    if cuda_aware_mpi():
        return "cuda-aware-mpi"
    return "host"


def reduction_path(device: str | None = "cpu") -> str:
    """How distributed training sums gradients on ``device``, for ``fastbp devices``.

    ``mpi``: host (NumPy) arrays, one ``MPI.Allreduce``; ``nccl``: CuPy arrays with
    ``cupy.cuda.nccl``; ``cuda-aware-mpi``: CuPy arrays handed to a CUDA-aware MPI;
    ``host``: device arrays copied to host buffers around an ``MPI.Allreduce``;
    ``unavailable``: mpi4py is not installed, the device cannot run here, or its arrays are
    neither NumPy nor CuPy.
    ``$FASTBP_MPI_REDUCTION`` forces one of the GPU paths.
    """
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "unavailable"
    try:
        backend = devices.resolve(device)
        return _backend_path(backend)
    except FastbpError:
        return "unavailable"


# -- the reducers: one call sums the flat buffer over all ranks ----------------------------
class HostReducer:
    """``flat`` is a NumPy array: ``comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)``."""

    path = "mpi"

    def __init__(self, comm: Any, backend: Backend, flat: Array) -> None:
        self.comm, self.MPI = comm, mpi()

    def __call__(self, flat: Array) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)


class CudaAwareMpiReducer(HostReducer):
    """``flat`` is a device array handed to a CUDA-aware MPI (after the device is idle)."""

    path = "cuda-aware-mpi"

    def __init__(self, comm: Any, backend: Backend, flat: Array) -> None:
        super().__init__(comm, backend, flat)
        self.backend = backend

    def __call__(self, flat: Array) -> None:
        self.backend.synchronize()
        super().__call__(flat)


class StagedReducer(HostReducer):
    """``flat`` lives on a device: copy to a host buffer, ``Allreduce`` there, copy back."""

    path = "host"

    def __init__(self, comm: Any, backend: Backend, flat: Array) -> None:
        super().__init__(comm, backend, flat)
        self.backend = backend
        self.host = np.empty(flat.shape, dtype=backend.dtype)
        if hasattr(flat, "get"):  # CuPy: page-locked host memory copies at full PCIe speed
            with contextlib.suppress(Exception):
                import cupyx

                self.host = cupyx.empty_pinned(flat.shape, dtype=backend.dtype)

    def __call__(self, flat: Array) -> None:
        if hasattr(flat, "get") and hasattr(flat, "set"):  # CuPy: no allocation per step
            flat.get(out=self.host)
        else:
            self.host[...] = self.backend.to_numpy(flat)
        super().__call__(self.host)
        if hasattr(flat, "set"):
            flat.set(self.host)
        else:
            self.backend.copy_into(flat, self.host)


class NcclReducer:
    """``flat`` is a CuPy array: ``ncclAllReduce`` in place on the current stream."""

    path = "nccl"

    def __init__(self, comm: Any, backend: Backend, flat: Array) -> None:
        from cupy.cuda import nccl

        self.nccl = nccl
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        self.dtype = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                      "float64": nccl.NCCL_FLOAT64}[backend.dtype]

    def __call__(self, flat: Array) -> None:
        import cupy

        stream = cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self.dtype,
                            self.nccl.NCCL_SUM, stream)


REDUCERS = {"mpi": HostReducer, "nccl": NcclReducer, "cuda-aware-mpi": CudaAwareMpiReducer,
            "host": StagedReducer}


def make_reducer(comm: Any, backend: Backend, flat: Array) -> Any:
    """The best reduction path every rank can take (the ranks agree before any is built)."""
    local = _backend_path(backend)
    paths = comm.allgather(local)
    if "mpi" in paths and any(p != "mpi" for p in paths):
        raise DistributedError(f"the ranks mix host and device arrays (paths {paths}): give "
                               "every rank the same kind of device")
    path = paths[0] if local == "mpi" else GPU_PATHS[max(GPU_PATHS.index(p) for p in paths)]
    return REDUCERS[path](comm, backend, flat)


# -- the buffers of one rank -----------------------------------------------------------------
class FlatGradients:
    """``∂C/∂W^l`` and ``∂C/∂b^l`` for every layer, and the summed cost, as views of ONE flat
    buffer, so a single ``Allreduce`` sums all of them."""

    def __init__(self, backend: Backend, sizes: Sequence[int]) -> None:
        shapes = [(n, k) for k, n in zip(sizes[:-1], sizes[1:])]
        total = sum(n * k + n for n, k in shapes)
        self.flat = backend.zeros((total + 1,))
        self.grad_w: list[Array] = []
        self.grad_b: list[Array] = []
        off = 0
        for n, k in shapes:
            self.grad_w.append(self.flat[off : off + n * k].reshape(n, k))
            off += n * k
            self.grad_b.append(self.flat[off : off + n].reshape(n, 1))
            off += n
        self.cost = self.flat[total:]  # one slot: the summed cost of the mini-batch

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes)


class ShardWorkspace:
    """The buffers of one step on a shard of ``k`` samples: ``a^l``, ``δ^l``, scratch, batch."""

    def __init__(self, backend: Backend, sizes: Sequence[int], k: int) -> None:
        self.activations = [backend.empty((n, k)) for n in sizes[1:]]
        self.deltas = [backend.empty((n, k)) for n in sizes[1:]]
        self.scratch = [backend.empty((n, k)) for n in sizes[1:]]
        self.xbuf = backend.empty((k, sizes[0]))
        self.ybuf = backend.empty((k, sizes[-1]))


class DistributedHistory(History):
    """:class:`fastbp.network.History`, plus per epoch the seconds of the SGD steps
    (``step_seconds``, slowest rank) and the mean seconds a rank spent in the gradient
    reduction (``comm_seconds``); ``ranks`` and ``reduction`` say how it ran."""

    def __init__(self, ranks: int, reduction: str) -> None:
        super().__init__()
        self.ranks, self.reduction = ranks, reduction
        self.step_seconds: list[float] = []
        self.comm_seconds: list[float] = []

    @property
    def comm_share(self) -> list[float]:
        """Per epoch: time in the reduction / time of the SGD steps."""
        return [c / max(s, 1e-12) for c, s in zip(self.comm_seconds, self.step_seconds)]


# -- checks that the ranks agree ---------------------------------------------------------------
def _agree(comm: Any, what: str, value: Any) -> None:
    """Raise ``DistributedError`` on every rank when ``value`` differs between ranks."""
    values = comm.allgather(value)
    bad = [r for r, v in enumerate(values) if v != values[0]]
    if bad:
        raise DistributedError(
            f"the ranks disagree on {what}: rank 0 has {values[0]!r}, rank(s) {bad} have "
            f"{[values[r] for r in bad]!r}; every rank must run the same command on the same data"
        )


def parameter_checksum(net: Network) -> float:
    """``Σ_l (Σ W^l + Σ b^l)`` in float64: equal on every rank while they agree."""
    xp = net.backend.xp
    return float(sum(float(xp.sum(a, dtype=xp.float64))
                     for a in (*net._weights, *net._biases)))


def check_parameters(net: Network, comm: Any, epoch: int | None = None) -> None:
    """Every rank's parameter checksum must equal rank 0's, bit for bit."""
    sums = np.asarray(comm.allgather(parameter_checksum(net)))
    same = (sums == sums[0]) | (np.isnan(sums) & np.isnan(sums[0]))
    if not same.all():
        when = "at the start" if epoch is None else f"after epoch {epoch}"
        bad = [int(r) for r in np.flatnonzero(~same)]
        raise DistributedError(
            f"the parameters differ between ranks {when}: checksum {sums[0]!r} on rank 0, "
            f"{[float(sums[r]) for r in bad]} on rank(s) {bad}; the ranks no longer train the "
            "same network (different code or data, or a non-deterministic reduction)"
        )


def broadcast_parameters(net: Network, comm: Any, root: int = 0) -> None:
    """Copy ``root``'s weights, biases and random state to every rank (one ``Bcast``)."""
    params = [*net._weights, *net._biases]
    host = np.empty(sum(int(np.prod(a.shape)) for a in params), dtype=net.backend.dtype)
    if comm.Get_rank() == root:
        host[...] = np.concatenate([net.backend.to_numpy(a).ravel() for a in params])
    comm.Bcast(host, root=root)
    off = 0
    with net.backend.activate():
        for a in params:
            size = int(np.prod(a.shape))
            net.backend.copy_into(a, host[off : off + size].reshape(a.shape))
            off += size
    net.rng.bit_generator.state = comm.bcast(net.rng.bit_generator.state, root=root)


# -- training ------------------------------------------------------------------------------------
def train(
    net: Network,
    X: Any,
    Y: Any,
    *,
    epochs: int,
    batch_size: int,
    eta: float,
    test: tuple[Any, Any] | None = None,
    comm: Any = None,
    lmbda: float = 0.0,
    shuffle: bool = True,
    callback: Callable[[EpochRecord, Network], bool | None] | None = None,
    verbose: bool = False,
    profile: bool = False,
    on_diverge: str = "raise",
) -> DistributedHistory:
    """:meth:`fastbp.Network.train` on every rank of ``comm`` (default ``MPI.COMM_WORLD``).

    Every rank passes the same ``X``, ``Y`` (and ``test``) and options; each gathers only its
    share of each mini-batch. Rank 0's parameters and random state are broadcast first; after
    training, every rank holds the parameters one process would have reached with rank 0's
    network. ``verbose`` prints on rank 0 only; ``callback`` runs on every rank and training
    stops when it returns ``False`` on any rank. As with ``Network.train``, epochs are numbered
    from ``len(net.history)``, which every epoch extends, and ``on_diverge`` says what NaN or
    inf does (the same on every rank, since cost and parameters agree). ``profile``
    synchronises the device around each reduction so ``comm_seconds`` measures it exactly (on
    the CPU it is exact anyway).
    An exception on any rank aborts the whole job (see :func:`abort_on_error`).
    """
    with abort_on_error():
        comm = comm if comm is not None else world()
        return _train(net, X, Y, epochs=epochs, batch_size=batch_size, eta=eta, test=test,
                      comm=comm, lmbda=lmbda, shuffle=shuffle, callback=callback,
                      verbose=verbose, profile=profile, on_diverge=on_diverge)


def _train(net: Network, X: Any, Y: Any, *, epochs: int, batch_size: int, eta: float,
           test: tuple[Any, Any] | None, comm: Any, lmbda: float, shuffle: bool,
           callback: Callable[[EpochRecord, Network], bool | None] | None, verbose: bool,
           profile: bool, on_diverge: str) -> DistributedHistory:
    MPI = mpi()
    rank, size = comm.Get_rank(), comm.Get_size()
    epochs = check_count("epochs", epochs, low=0)
    eta = check_positive("eta", eta)
    lmbda = check_positive("lmbda", lmbda, allow_zero=True)
    be, sizes = net.backend, net.sizes
    _backend_path(be)  # NumPy or CuPy arrays, else a clear error before any buffer is made
    with be.activate():
        X = check_batch(X, sizes[0], "X")
        n = int(X.shape[1])
        batch_size = check_count("batch_size", batch_size, low=1, high=n)
        xs = samples_major(be, X)
        ys = targets_major(be, Y, n, net.sizes[-1])
        evaluator, n_test = None, None
        if test is not None:
            if not (isinstance(test, (tuple, list)) and len(test) == 2):
                raise ConfigError("test must be a pair (X_test, labels)")
            xt = check_batch(test[0], sizes[0], "test X")
            n_test = int(xt.shape[1])
            labels = check_labels(test[1], sizes[-1], n_test, "test labels")
            lo, hi = shard(n_test, size, rank)
            evaluator = Evaluator(be, sizes, samples_major(be, xt[:, lo:hi]),
                                  be.index_array(np.asarray(labels)[lo:hi]))
        xp = be.xp
        data_sum = float(xp.sum(xs, dtype=xp.float64)) + float(xp.sum(ys, dtype=xp.float64))
        data_sum = float(f"{data_sum:.10e}")  # other data differ by far more than rounding
        _agree(comm, "the network, data and options",
               (sizes, net.cost.__name__, be.dtype, n, n_test, data_sum, epochs, batch_size,
                eta, lmbda, shuffle, len(net.history)))

        broadcast_parameters(net, comm)
        check_parameters(net, comm)
        grads = FlatGradients(be, sizes)
        reduce = make_reducer(comm, be, grads.flat)
        history = DistributedHistory(size, reduce.path)
        guard = DivergenceGuard(be, net._weights, net._biases, on_diverge=on_diverge, eta=eta,
                                first_epoch=len(net.history))
        workspaces: dict[int, ShardWorkspace] = {}
        decay = 1.0 - eta * lmbda / n
        for epoch in range(len(net.history), len(net.history) + epochs):
            order = net.rng.permutation(n) if shuffle else np.arange(n)
            idx_all = be.index_array(order)
            t0 = time.perf_counter()
            total, comm_s = 0.0, 0.0
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                lo, hi = shard(m, size, rank)
                if hi > lo:
                    ws = workspaces.get(hi - lo)
                    if ws is None:
                        ws = workspaces[hi - lo] = ShardWorkspace(be, sizes, hi - lo)
                    _shard_gradients(be, net, xs, ys, idx_all[start + lo : start + hi], ws, grads)
                else:
                    grads.flat.fill(0)
                if profile:
                    be.synchronize()
                tc = time.perf_counter()
                reduce(grads.flat)
                if profile:
                    be.synchronize()
                comm_s += time.perf_counter() - tc
                _apply(be, net, grads, eta / m, decay)
                total = total + grads.cost[0]
            cost = float(total) / n  # reading the cost waits for the device
            t1 = time.perf_counter()
            guard.check(epoch, cost)
            correct = evaluator.correct(net._weights, net._biases) if evaluator else 0
            t2 = time.perf_counter()
            sums = np.array([correct, comm_s], dtype=np.float64)
            comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
            times = np.array([t1 - t0, t2 - t0], dtype=np.float64)
            comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
            check_parameters(net, comm, epoch)
            hits = int(sums[0]) if evaluator else None
            record = EpochRecord(
                epoch=epoch, cost=cost,
                accuracy=None if hits is None else hits / n_test,
                correct=hits, seconds=float(times[1]),
                samples_per_s=n / max(float(times[0]), 1e-9),
            )
            history.append(record)
            net.history.append(record)
            history.step_seconds.append(float(times[0]))
            history.comm_seconds.append(float(sums[1]) / size)
            if verbose and rank == 0:
                print(format_record(record, n_test), flush=True)
            stop = callback is not None and callback(record, net) is False
            if comm.allreduce(int(stop), op=MPI.MAX):
                break
    return history


def _shard_gradients(be: Backend, net: Network, xs: Array, ys: Array, idx: Array,
                     ws: ShardWorkspace, grads: FlatGradients) -> None:
    """Feedforward, BP1–BP2 on this rank's share, then BP3 and BP4 summed over it into
    ``grads`` (and its summed cost into the cost slot)."""
    x = be.take_rows(xs, idx, out=ws.xbuf).T
    y = be.take_rows(ys, idx, out=ws.ybuf).T
    feedforward(be, net._weights, net._biases, x, ws.activations)
    grads.cost[...] = backpropagate(be, net.cost, net._weights, x, y, ws.activations,
                                    ws.deltas, ws.scratch)
    inputs = [x, *ws.activations[:-1]]
    for l, delta in enumerate(ws.deltas):
        bp4(be, delta, inputs[l], out=grads.grad_w[l])
        bp3(be, delta, out=grads.grad_b[l])


def _apply(be: Backend, net: Network, grads: FlatGradients, alpha: float, decay: float) -> None:
    """``W^l ← decay·W^l − α Σ ∂C/∂W^l``, ``b^l ← b^l − α Σ ∂C/∂b^l``, with ``α = η/m``
    (the order of operations of the single-process step)."""
    xp = be.xp
    for w, b, gw, gb in zip(net._weights, net._biases, grads.grad_w, grads.grad_b):
        if decay != 1.0:
            xp.multiply(w, decay, out=w)
        gw *= alpha
        xp.subtract(w, gw, out=w)
        gb *= alpha
        xp.subtract(b, gb, out=b)


# -- the command line: ``mpiexec -n P fastbp train --distributed ...`` -----------------------
def run_command(run: Callable[[Any], int], args: Any) -> int:
    """Run the subcommand ``run(args)`` on this rank of ``MPI.COMM_WORLD``.

    ``--device cuda`` becomes this rank's GPU (:func:`rank_device`); ranks other than 0 print
    nothing on stdout (``args.rank`` tells the command which rank it is, so only rank 0
    saves); an exception on any rank aborts the job.
    """
    with abort_on_error():
        comm = world()
        rank, size = comm.Get_rank(), comm.Get_size()
        args.rank, args.in_mpi = rank, True
        args.device = rank_device(args.device, comm)
        if rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        else:
            print(f"fastbp: {size} rank(s) over MPI ({mpi().Get_library_version().split()[0]}); "
                  f"gradients summed by {reduction_path(args.device)}", flush=True)
        return run(args)


def trainer(net: Network) -> Callable[..., DistributedHistory]:
    """:func:`train` bound to ``net``: a drop-in for ``net.train`` in a command."""
    return functools.partial(train, net)
