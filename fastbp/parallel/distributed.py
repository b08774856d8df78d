"""Data-parallel training over MPI (mpi4py): the names ``fastbp.distributed`` offers.

With ``P`` ranks, every rank takes a contiguous share of each mini-batch, sums its gradient
into one flat buffer, and one reduction per step gives every rank the whole batch's gradient;
every rank applies the same update, so the parameters stay identical on every rank. The epochs
run through the same driver as :meth:`fastbp.Network.train`: one rank is bit for bit
``Network.train``; ``P`` ranks take its steps to rounding.

Where things live: :mod:`fastbp.parallel.mpi` (MPI, aborting the job, each rank's device, the
checks that ranks agree), :mod:`fastbp.parallel.reduce` (how gradients are summed),
:mod:`fastbp.parallel.shard` (one rank's epoch), :mod:`fastbp.parallel.train` (``train``).
mpi4py is imported only when a function needs it (``pip install "fastbp[mpi]"``).
"""

from .mpi import (
    ABORT_GRACE_S,
    INSTALL_HINT,
    DistributedError,
    abort_on_error,
    agree,
    broadcast_parameters,
    check_parameters,
    cuda_aware_mpi,
    gpu_count,
    local_rank,
    mpi,
    parameter_checksum,
    rank_device,
    world,
)
from .reduce import (
    GPU_PATHS,
    PATHS,
    REDUCTION_ENV,
    CudaAwareMpiReducer,
    HostReducer,
    StagedReducer,
    backend_path,
    make_reducer,
    reduction_path,
)
from .shard import FlatGradients, ShardEpoch, TimedEpoch, shard
from .train import DistributedHistory, ShardEvaluator, run_command, train, trainer

__all__ = [
    "ABORT_GRACE_S", "GPU_PATHS", "INSTALL_HINT", "PATHS", "REDUCTION_ENV",
    "CudaAwareMpiReducer", "DistributedError", "DistributedHistory", "FlatGradients",
    "HostReducer", "ShardEpoch", "ShardEvaluator", "StagedReducer", "TimedEpoch",
    "abort_on_error", "agree", "backend_path", "broadcast_parameters", "check_parameters",
    "cuda_aware_mpi", "gpu_count", "local_rank", "make_reducer", "mpi", "parameter_checksum",
    "rank_device", "reduction_path", "run_command", "shard", "train", "trainer", "world",
]
