"""How much of the machine other processes took while a benchmark ran.

On a shared machine a figure is only as good as the quiet it was taken in: a BLAS or OpenMP pool
with one thread per core slows down many times over when another process holds one of the cores.
:class:`OtherLoad` reads the machine's busy time (``/proc/stat``) and this process's own CPU time
around the timed rounds; the difference, over the wall time, is the number of cores that other
processes kept busy (``0.0`` on a quiet machine, ``1.0`` when one core was taken). Every result
records it, so a disturbed figure is visible as such. Where ``/proc/stat`` does not exist it is
``None``.
"""

from __future__ import annotations

import os
import resource
import time

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class OtherLoad:
    """``with OtherLoad() as load: ...`` then ``load.cores``: cores other processes used."""

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        self._busy, self._own, self._t = _busy_seconds(), _own_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = _busy_seconds()
        wall = time.perf_counter() - self._t
        if busy is None or self._busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (_own_seconds() - self._own)
        self.cores = round(max(0.0, others / wall), 2)


def other_cores(seconds: float = 0.3) -> float | None:
    """Cores other processes use right now, sampled over ``seconds``."""
    with OtherLoad() as load:
        time.sleep(seconds)
    return load.cores


def wait_for_quiet(max_wait_s: float, threshold: float = 0.25, sample_s: float = 0.5) -> float:
    """Wait (at most ``max_wait_s``) until other processes use less than ``threshold`` cores;
    return the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait_s:
        cores = other_cores(sample_s)
        if cores is None or cores < threshold:
            break
    return time.perf_counter() - t0
