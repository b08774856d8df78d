"""Mini-batches gathered ahead: a helper thread gathers the rows of the epoch's next chunk while
the current chunk trains.

Gathering a mini-batch, ``X[order[i : i + m]]``, is a copy of random rows that runs at the
memory's pace on one core: 40 % of a one-thread step of ``[784, 30, 10]`` at batch 1000 with
MKL. Where a step's BLAS runs on one thread (:mod:`.blas_threads`), another core is idle, so
the gather moves there: the epoch's order is cut into chunks of whole mini-batches, chunk
``c + 1`` is gathered (``np.take``, which releases the GIL) while chunk ``c`` trains, and
training reads each batch as a contiguous slice of its chunk. The batches, their order and the
arithmetic are those of the loop that gathers each batch itself: the results are the same to
the bit.

Where BLAS runs threaded instead, both threads gather each chunk (two cores copy random rows
1.6× faster than one), then it trains. Neither happens with one core, or with
``$FASTBP_PREFETCH=0``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ...core.memory import translate_oom
from ...core.plan import EpochPlan
from ...core.validate import env_flag
from .blas_threads import threaded

ENV_VAR = "FASTBP_PREFETCH"
CHUNK_ROWS = 2048  # rows per chunk (rounded down to whole batches): 6 MB of MNIST float32

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def mode(sizes: Sequence[int], m: int, threads: bool | None = None, rows: int | None = None
         ) -> str | None:
    """How an epoch of batch ``m`` gathers: ``"overlap"`` (the helper gathers the next chunk
    while BLAS, on one thread, trains this one), ``"parallel"`` (BLAS is threaded, so both
    threads gather a chunk, then it trains), or None (one core, or ``$FASTBP_PREFETCH=0``:
    each batch is gathered when it is needed; also for an epoch of ``rows`` samples that fits
    in one chunk, where there is nothing to overlap). ``threads``: whether BLAS runs threaded in
    this epoch (default: :func:`fastbp.devices.cpu.blas_threads.threaded`)."""
    if not enabled() or cores() < 2:
        return None
    if rows is not None and rows <= chunk_rows(m):
        return None
    return "parallel" if (threaded(sizes, m) if threads is None else threads) else "overlap"


def enabled() -> bool:
    """``$FASTBP_PREFETCH``: ``0`` (or ``off``) turns gathering ahead off, ``1`` (the default)
    leaves it on; any other value is a ``ConfigError``."""
    return env_flag(ENV_VAR, True)


def chunk_rows(m: int) -> int:
    """Rows per chunk: whole mini-batches, about :data:`CHUNK_ROWS`, at least one batch."""
    return max(m, CHUNK_ROWS // m * m)


class ChunkBuffers:
    """Two pairs of ``(rows, n_in)`` / ``(rows, n_out)`` buffers: one trains, one fills."""

    def __init__(self, rows: int, n_in: int, n_out: int, dtype: Any) -> None:
        self.rows = rows
        self.x = [np.empty((rows, n_in), dtype) for _ in range(2)]
        self.y = [np.empty((rows, n_out), dtype) for _ in range(2)]


class ChunkCache:
    """A network's chunk buffers (one cache of its :class:`~fastbp.core.plan.Cache`, shared by
    the devices that gather ahead), by ``(sizes, m, dtype)``."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[tuple[int, ...], int, str], ChunkBuffers] = {}


def chunk_buffers(backend: Any, plan: EpochPlan) -> ChunkBuffers:
    """The network's chunk buffers for ``plan``'s shape, batch size and dtype, made once and kept
    in its cache (a MemoryError becomes a DeviceError with the numbers)."""
    sizes, m, dtype = plan.layers.sizes, plan.settings.batch_size, np.dtype(plan.data.xs.dtype)
    cache = plan.cache.of(ChunkCache).buffers
    key = (tuple(sizes), m, dtype.name)
    buffers = cache.get(key)
    if buffers is None:
        with translate_oom(backend, sizes, m):
            buffers = cache[key] = ChunkBuffers(chunk_rows(m), sizes[0], sizes[-1], dtype)
    return buffers


def chunks(xs: np.ndarray, ys: np.ndarray, order: np.ndarray, buffers: ChunkBuffers,
           parallel: bool = False) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """``(X[idx], Y[idx])`` for consecutive chunks ``idx`` of ``order`` (``buffers.rows`` long,
    the last one shorter), each gathered on the helper thread while the previous one is used
    (``parallel``: by the helper and this thread together, when it is asked for).

    A chunk is valid until the next one is asked for. Closing the iterator early (an error in
    training) waits for the gather in flight, so the buffers are free when it returns."""
    n, size = int(order.shape[0]), buffers.rows
    pool = _helper()
    if parallel:
        for c, start in enumerate(range(0, n, size)):
            idx = order[start : start + size]
            half = idx.shape[0] // 2
            other = pool.submit(_gather_part, xs, ys, idx, buffers, c % 2, 0, half)
            try:
                _gather_part(xs, ys, idx, buffers, c % 2, half, idx.shape[0])
            finally:
                other.result()
            r = idx.shape[0]
            yield buffers.x[c % 2][:r], buffers.y[c % 2][:r]
        return
    pending: Future | None = pool.submit(_gather, xs, ys, order[:size], buffers, 0)
    try:
        for c, start in enumerate(range(0, n, size)):
            assert pending is not None
            x, y = pending.result()
            pending = None
            if start + size < n:
                pending = pool.submit(_gather, xs, ys, order[start + size : start + 2 * size],
                                      buffers, (c + 1) % 2)
            yield x, y
    finally:
        if pending is not None:
            pending.result()


def _gather(xs: np.ndarray, ys: np.ndarray, idx: np.ndarray, buffers: ChunkBuffers, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    r = int(idx.shape[0])
    x, y = buffers.x[k][:r], buffers.y[k][:r]
    np.take(xs, idx, 0, x, "clip")  # indices are a permutation: no bounds check needed
    np.take(ys, idx, 0, y, "clip")
    return x, y


def _gather_part(xs: np.ndarray, ys: np.ndarray, idx: np.ndarray, buffers: ChunkBuffers, k: int,
                 lo: int, hi: int) -> None:
    np.take(xs, idx[lo:hi], 0, buffers.x[k][lo:hi], "clip")
    np.take(ys, idx[lo:hi], 0, buffers.y[k][lo:hi], "clip")


def _helper() -> ThreadPoolExecutor:
    """The gathering thread, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastbp-gather")
        return _pool
