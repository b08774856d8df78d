"""MPI for distributed training: the module (imported when first needed), one rank's failure
ending the whole job, each rank's device, and the checks that the ranks still agree.

mpi4py is imported only when a function here needs it (``pip install "fastbp[mpi]"``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .. import devices
from ..errors import FastbpError

if TYPE_CHECKING:
    from ..model.network import Network

INSTALL_HINT = 'pip install "fastbp[mpi]"  (mpi4py and MPICH from PyPI)'
ABORT_GRACE_S = 0.5


class DistributedError(FastbpError, RuntimeError):
    """MPI is missing, or the ranks disagree (data, options or parameters)."""


def mpi() -> Any:
    """The ``mpi4py.MPI`` module (initialises MPI on first use)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"distributed training needs mpi4py: {INSTALL_HINT}") from exc
    except RuntimeError as exc:  # mpi4py is there, but the MPI library it needs does not load
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DistributedError(f"mpi4py is installed but cannot load an MPI library ({first}): "
                               f"{INSTALL_HINT}, or point mpi4py at the system's MPI") from exc
    return MPI


def world() -> Any:
    """``MPI.COMM_WORLD``."""
    return mpi().COMM_WORLD


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


# -- devices: one GPU per rank ---------------------------------------------------------------
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


# -- checks that the ranks agree ---------------------------------------------------------------
def agree(comm: Any, what: str, value: Any) -> None:
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
    return float(sum(float(xp.sum(a, dtype=xp.float64)) for a in net.parameters()))


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


def broadcast_parameters(net: Network, comm: Any, root: int = 0,
                         velocities: Sequence[Any] | None = None) -> None:
    """Copy ``root``'s weights, biases (and ``velocities``, momentum's ``v``, when given) and
    random state to every rank (one ``Bcast``)."""
    params = [*net.parameters(), *(velocities or ())]
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
