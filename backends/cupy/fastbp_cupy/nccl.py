"""NCCL for distributed training: the ``cuda`` device's own gradient reducer
(:meth:`fastbp.devices.Backend.gradient_reducer`).

``ncclAllReduce`` overwrites the flat gradient buffer ``g`` of every rank with ``Σ_ranks g``, in
place on the current CUDA stream, without a copy to the host. CuPy's NCCL is imported when the
reducer first runs, never when this module is imported.
"""

from __future__ import annotations

from typing import Any

DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


def nccl_available() -> bool:
    """Whether CuPy was built with NCCL and it loads here."""
    try:
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 - CuPy missing or built without NCCL
        return False
    return bool(getattr(nccl, "available", True))


class NcclReducer:
    """``reduce(flat)``: ``ncclAllReduce(SUM)`` of the CuPy array ``flat`` over the ranks of
    the MPI communicator ``comm``.

    Building it does not communicate; the first call sets up the NCCL communicator (rank 0's
    unique id broadcast over ``comm``), which every rank makes at the same step.
    """

    path = "nccl"

    def __init__(self, comm: Any, dtype: str) -> None:
        self.mpi_comm, self.dtype = comm, dtype
        self.comm: Any = None

    def connect(self) -> None:
        """The NCCL communicator of the ranks of ``mpi_comm`` (a collective call)."""
        from cupy.cuda import nccl

        comm = self.mpi_comm
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())

    def __call__(self, flat: Any) -> None:
        import cupy
        from cupy.cuda import nccl

        if self.comm is None:
            self.connect()
        stream = cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size,
                            getattr(nccl, DTYPES[self.dtype]), nccl.NCCL_SUM, stream)
