"""The second thread of a two-thread epoch (``fastbp_numba``'s), kept between epochs.

(A NumPy form of that epoch, two Python threads releasing the GIL in BLAS and ufunc calls, ran
slower than the ``cpu`` device's one-thread loop with threaded BLAS: 179k against 368k samples/s
on ``[784,100,10]`` at batch 100, 453k against 480–557k at batch 1000; the GIL's hand-overs
between the many small calls cost more than the second core gives.)"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


@contextlib.contextmanager
def helper() -> Iterator[Callable[..., Callable[[], None]]]:
    """``start(fn, *args)`` runs ``fn`` on another thread and returns a wait for it: the one
    thread kept for two-thread epochs (starting one costs about 0.1 ms an epoch) or, while
    another network's epoch holds that one, a new thread."""
    global _POOL
    if _LOCK.acquire(blocking=False):
        try:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastbp-half")
            pool = _POOL

            def start_pooled(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
                return pool.submit(fn, *args).result

            yield start_pooled
        finally:
            _LOCK.release()
        return

    def start_thread(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
        thread = threading.Thread(target=fn, args=args, name="fastbp-half", daemon=True)
        thread.start()
        return thread.join

    yield start_thread
