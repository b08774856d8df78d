"""How the ranks sum their gradients: one call per step overwrites the flat gradient buffer
``g`` with ``Σ_ranks g`` on every rank.

Host (NumPy) arrays take one ``MPI.Allreduce``. Device arrays take, best first, the device's own
reducer (:meth:`fastbp.devices.Backend.gradient_reducer`: NCCL for the ``cuda`` device, from
``fastbp_cupy``), a CUDA-aware MPI, or host buffers around an ``MPI.Allreduce``. The ranks agree
on one path before any reducer is used.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from .. import devices
from ..core.validate import env_choice
from ..devices.backend import Array, Backend
from ..errors import FastbpError
from .mpi import DistributedError, cuda_aware_mpi, mpi

REDUCTION_ENV = "FASTBP_MPI_REDUCTION"
# How the gradients of device arrays are summed, best first; "mpi" is host (NumPy) arrays.
# "nccl" is the name the cuda device's own reducer gives itself.
GPU_PATHS = ("nccl", "cuda-aware-mpi", "host")
PATHS = ("mpi", *GPU_PATHS, "unavailable")
MPI_PATHS = ("cuda-aware-mpi", "host")


def backend_path(backend: Backend) -> str:
    """The reduction path for arrays of ``backend`` (before the ranks agree on one): the
    device's own reducer when it offers one, else an MPI path."""
    own = backend.gradient_reducer(None, None)
    # junk is refused everywhere; a path this device cannot take, below
    forced = env_choice(REDUCTION_ENV, (*([str(own.path)] if own is not None else []),
                                        *PATHS[:-1]))
    if backend.host_arrays:
        return "mpi" if own is None else str(own.path)
    if own is None and not backend.staged_arrays:
        raise DistributedError(
            f"distributed training runs on NumPy or CuPy arrays (devices cpu, cpu-jit, cuda), "
            f"or on a device with its own gradient reducer; device {backend.device!r} computes "
            f"with {getattr(backend.xp, '__name__', '?')} and offers none")
    if forced:
        allowed = (*([str(own.path)] if own is not None else []), *MPI_PATHS)
        if forced not in allowed:
            raise DistributedError(f"{REDUCTION_ENV}={forced!r}: device {backend.device!r} "
                                   f"takes one of {', '.join(allowed)}")
        return forced
    if own is not None:
        return str(own.path)
    return "cuda-aware-mpi" if cuda_aware_mpi() else "host"


def reduction_path(device: str | None = "cpu") -> str:
    """How distributed training sums gradients on ``device``, for ``fastbp devices``.

    ``mpi``: host (NumPy) arrays, one ``MPI.Allreduce``; ``nccl``: CuPy arrays with
    ``cupy.cuda.nccl`` (the ``cuda`` device's own reducer); ``cuda-aware-mpi``: CuPy arrays
    handed to a CUDA-aware MPI; ``host``: device arrays copied to host buffers around an
    ``MPI.Allreduce``; another name: the device's own reducer; ``unavailable``: mpi4py is not
    installed, the device cannot run here, or its arrays are neither NumPy nor CuPy and it has no
    reducer of its own. ``$FASTBP_MPI_REDUCTION`` forces one of the GPU paths.
    """
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "unavailable"
    try:
        return backend_path(devices.resolve(device))
    except FastbpError:
        return "unavailable"


# -- the MPI reducers: one call sums the flat buffer over all ranks --------------------------
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


REDUCERS = {"mpi": HostReducer, "cuda-aware-mpi": CudaAwareMpiReducer, "host": StagedReducer}


def make_reducer(comm: Any, backend: Backend, flat: Array) -> Any:
    """The reducer of the path every rank takes: each rank's best when they all name the same
    one (the device's own reducer, or an MPI path), else plain MPI on host arrays and host
    buffers on device arrays, which work everywhere."""
    local, host = backend_path(backend), backend.host_arrays
    paths = comm.allgather((local, host))
    if any(h != host for _, h in paths):
        raise DistributedError(f"the ranks mix host and device arrays (paths "
                               f"{[p for p, _ in paths]}): give every rank the same kind of device")
    path = local if all(p == local for p, _ in paths) else ("mpi" if host else "host")
    if path in REDUCERS:
        return REDUCERS[path](comm, backend, flat)
    own = backend.gradient_reducer(comm, flat)
    if own is None or own.path != path:  # pragma: no cover - the device changed its answer
        raise DistributedError(f"device {backend.device!r} no longer offers {path!r}")
    return own
