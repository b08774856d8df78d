"""The environment variables fastbp reads, checked when a command starts: a bad value is one
line and exit status 2 before any work, not an error (or a silent default) mid-run."""

from __future__ import annotations

import os

MPI_REDUCTIONS = ("nccl", "cuda-aware-mpi", "host")
"""The values ``$FASTBP_MPI_REDUCTION`` takes (the GPU reduction paths)."""


def check_environment() -> None:
    """Read every fastbp environment variable that is set; ``FastbpError`` on the first bad one:
    ``FASTBP_DEVICE``, ``FASTBP_BLAS``, ``FASTBP_THREADED_WORK``, ``FASTBP_PREFETCH``,
    ``FASTBP_MPI_REDUCTION``, ``FASTBP_CUDA_GRAPHS``, ``FASTBP_PLAN``."""
    from ..core.validate import env_choice, env_flag
    from ..devices import planner
    from ..devices.cpu import blas_threads, cblas, prefetch
    from ..devices.registry import check_env_device

    check_env_device()
    cblas.choice()
    if os.environ.get(blas_threads.ENV_VAR, "").strip():
        blas_threads.threaded_work()
    prefetch.enabled()
    env_choice("FASTBP_MPI_REDUCTION", MPI_REDUCTIONS)
    env_flag("FASTBP_CUDA_GRAPHS", True)
    planner.mode()
