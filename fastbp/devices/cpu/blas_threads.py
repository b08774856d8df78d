"""How many BLAS threads a training step gets: the BLAS library's setting, or one thread where
threads do not pay.

OpenBLAS splits any GEMM above about 0.3 M multiply-adds between its threads, statically: every
call waits for each thread's share. For the few-microsecond GEMMs of a small network that wait
costs more than the second core gives (at most ~15 % on a quiet 2-core machine), and when
another process holds a core it costs everything: the step waits for a descheduled thread, and
training runs 10–100× slower (measured: ``benchmarks/results/speed-cpu``). So, as XLA decides
per operation whether to use its thread pool, the ``cpu`` and ``cpu-jit`` epochs run BLAS on one
thread when a step does fewer than :func:`threaded_work` multiply-adds (``m · Σ n_l n_{l-1}``):
:data:`THREADED_WORK` for OpenBLAS, :data:`THREADED_WORK_MKL` for MKL, whose threads pay from
smaller products on (the ``cpu`` device also keeps a :func:`narrow` network on one thread).
Above that line the library's own setting (``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, threadpoolctl, ...) holds, and for a network of few weights the ``cpu-jit``
device uses two cores its own way when the library allows more than one thread
(``fastbp_numba``: each thread half of every step, BLAS on one thread each). The limit only
ever lowers the thread count, and is restored when the epoch ends. ``FASTBP_THREADED_WORK=N``
sets the threshold (``0``: the library's setting everywhere).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ...core.validate import env_int

ENV_VAR = "FASTBP_THREADED_WORK"
THREADED_WORK = 50_000_000  # multiply-adds per step: about half a millisecond of one core
THREADED_WORK_MKL = 5_000_000  # MKL: [784,100,10] at batch 100 is 1.3x faster on 2 threads
NARROW_WORK = 64  # multiply-adds per input value: below, see narrow()

_controller: Any = None
_controller_for: set[str | None] = set()  # the libraries it was made with


def step_work(sizes: Sequence[int], m: int) -> int:
    """Multiply-adds of one step's feedforward GEMMs, ``m · Σ_l n_l n_{l-1}`` (BP2 and BP4 add
    about twice as many again, in the same proportion)."""
    return m * sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))


def threaded_work() -> int:
    """The threshold in force: ``$FASTBP_THREADED_WORK`` (read each time), else the default of
    the BLAS the epochs call (:mod:`fastbp.devices.cpu.cblas`)."""
    value = env_int(ENV_VAR, low=0, hint="multiply-adds per step, e.g. 50000000; 0 keeps the "
                    "BLAS library's thread setting")
    if value is None:
        from .cblas import find

        lib = find()
        return THREADED_WORK_MKL if lib is not None and lib.name == "mkl" else THREADED_WORK
    return value


def threaded(sizes: Sequence[int], m: int) -> bool:
    """Whether a step of batch ``m`` is worth more than one thread (else BLAS runs on one)."""
    return step_work(sizes, m) >= threaded_work()


def narrow(sizes: Sequence[int]) -> bool:
    """Whether a network's products are too skinny for BLAS threads: fewer than
    :data:`NARROW_WORK` multiply-adds per input value (``Σ n_l n_{l-1} < 64 n_0``, a first
    hidden layer below ~64 units). The ``cpu`` device keeps such a network on one BLAS thread
    and gathers rows on the other core instead (2-core machine, MKL, ``[784,30,10]`` at batch
    1000: 1.05 M samples/s so against 0.87 M with BLAS threads)."""
    return step_work(sizes, 1) < NARROW_WORK * sizes[0]


def library_threads() -> int:
    """The most threads the loaded BLAS libraries are set to use now (1 without
    threadpoolctl: then nothing here starts threads of its own)."""
    return max((lib.num_threads for lib in _blas_libraries()), default=1)


@contextlib.contextmanager
def step_threads(sizes: Sequence[int], m: int, threads: bool | None = None) -> Iterator[None]:
    """Within the block, BLAS runs on one thread unless ``threads`` (default: :func:`threaded`
    for a step of batch ``m``), else as configured. Without threadpoolctl it changes nothing."""
    if threaded(sizes, m) if threads is None else threads:
        yield
        return
    with one_thread():
        yield


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Within the block, the BLAS libraries run on one thread (their setting comes back after).

    Each library's own get/set calls, as threadpoolctl's ``limit`` makes them, without its
    description of every library on each entry (a tenth of a millisecond an epoch)."""
    libs = _blas_libraries()
    saved = [lib.num_threads for lib in libs]
    for lib, n in zip(libs, saved):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved):
            if n != 1:
                lib.set_num_threads(n)


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries (none without threadpoolctl)."""
    controller = _blas_controller()
    if controller is None:
        return []
    return [lib for lib in controller.lib_controllers if lib.user_api == "blas"]


def _blas_controller() -> Any:
    """A threadpoolctl controller of the BLAS libraries loaded now: SciPy's, and the one
    :mod:`fastbp.devices.cpu.cblas` calls (made again when that choice loads another library)."""
    global _controller, _controller_for
    try:
        import scipy.linalg.blas  # noqa: F401 - load SciPy's BLAS before looking for it
        from threadpoolctl import ThreadpoolController

        from .cblas import find
    except ImportError:
        return None
    lib = find()
    key = None if lib is None else lib.path
    if _controller is None or key not in _controller_for:
        _controller = ThreadpoolController()
        _controller_for = {key, *(c.filepath for c in _controller.lib_controllers)}
    return _controller
