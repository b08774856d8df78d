"""The built-in ``cpu`` device and how the CPU goes fast: this is the one declared module that
CPU device plugins (the compiled ``cpu-jit`` epoch) import from.

- :class:`NumpyBackend`: NumPy for elementwise passes, its own epoch loop (:mod:`.epoch`);
- :mod:`.cblas`: a CBLAS ``?gemm`` called directly (MKL, else NumPy's OpenBLAS);
- :mod:`.blas_threads`: how many BLAS threads a step of a given size gets;
- :mod:`.prefetch`: rows of the next mini-batches gathered ahead on another core;
- :mod:`.halves`: the helper thread that takes half of every step.
"""

from . import blas_threads, cblas, epoch, halves, prefetch
from .backend import NumpyBackend, blas_description, cpu_model
from .blas_threads import library_threads, one_thread, step_threads, step_work, threaded

__all__ = [
    "NumpyBackend", "blas_description", "blas_threads", "cblas", "cpu_model", "epoch", "halves",
    "library_threads", "one_thread", "prefetch", "step_threads", "step_work", "threaded",
]
