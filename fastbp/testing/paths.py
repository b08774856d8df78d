"""The paths a device's epoch can take, each as a workload and the settings that force it.

A device may run a step differently by its size: one sample at a time, small products, large
vectorised passes, rows gathered ahead on a helper thread, a step split between two threads.
Each :class:`Path` is a workload (layer sizes, samples, batch size) and the settings that send
the CPU devices down that path whatever the machine (``$FASTBP_THREADED_WORK``,
``$FASTBP_PREFETCH``, ``FASTBP_PLAN=off``, two cores, two BLAS threads). Another device takes
whatever path its own code chooses for the same workload; the suite holds every one of them to
the oracle.

The workloads sit on the far side of the CPU devices' thresholds:
:data:`fastbp.devices.cpu.epoch.DIRECT_WORK` multiply-adds per step (direct BLAS calls),
:data:`fastbp.devices.cpu.epoch.SIMD_SIGMOID` activations (the vectorised σ) and
:data:`fastbp.devices.cpu.prefetch.CHUNK_ROWS` samples (more than one chunk to gather ahead).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ..devices import planner
from ..devices.cpu import blas_threads, prefetch

THREADED = blas_threads.ENV_VAR  # FASTBP_THREADED_WORK
GATHER = prefetch.ENV_VAR  # FASTBP_PREFETCH
ONE_THREAD = str(10**15)  # a threshold no step reaches: BLAS on one thread
PLAN = planner.ENV_VAR  # FASTBP_PLAN: "off", so the thresholds above choose, not a measurement


@dataclass(frozen=True)
class Path:
    """A workload and the environment that forces one way of running its epoch."""

    name: str
    sizes: tuple[int, ...]
    n: int
    batch_size: int
    env: Mapping[str, str] = field(default_factory=dict)
    two_cores: bool = False
    what: str = ""

    def __str__(self) -> str:
        return self.name


WIDE = (100, 100, 10)  # 1.1 M multiply-adds a step at batch 100, 10,000 activations a layer

PATHS = (
    Path("one-row", (12, 7, 5), 24, 1, {GATHER: "0", THREADED: ONE_THREAD, PLAN: "off"},
         what="batch 1: one sample a step (the compiled one-row loops)"),
    Path("small", (12, 9, 6, 4), 43, 10, {GATHER: "0", THREADED: ONE_THREAD, PLAN: "off"},
         what="small products, three hidden layers, a short last batch (43 = 4 × 10 + 3)"),
    Path("vectorised", WIDE, 530, 100, {GATHER: "0", THREADED: ONE_THREAD, PLAN: "off"},
         what="direct BLAS calls and the vectorised σ, each batch gathered in turn"),
    Path("gather-ahead", WIDE, 2103, 100, {GATHER: "1", THREADED: ONE_THREAD, PLAN: "off"},
         two_cores=True,
         what="rows of the next chunk gathered on a helper thread, BLAS on one thread"),
    Path("two-threads", WIDE, 2103, 100, {GATHER: "1", THREADED: "0", PLAN: "off"},
         two_cores=True,
         what="threaded steps: two threads split every step (cpu-jit) or gather (cpu); the "
              "last batch of 3 leaves the second half empty"),
)
BY_NAME = {p.name: p for p in PATHS}


@contextlib.contextmanager
def forced(path: Path | str) -> Iterator[Path]:
    """Within the block, the settings of ``path`` (a :class:`Path` or its name) hold: its
    environment variables, and for ``two_cores`` at least two cores and two BLAS threads."""
    path = BY_NAME[path] if isinstance(path, str) else path
    saved = {key: os.environ.get(key) for key in path.env}
    real_cores = prefetch.cores
    with contextlib.ExitStack() as stack:
        os.environ.update(path.env)
        if path.two_cores:
            prefetch.cores = lambda: max(2, real_cores())  # type: ignore[assignment]
            stack.enter_context(_blas_threads(2))
        try:
            yield path
        finally:
            prefetch.cores = real_cores  # type: ignore[assignment]
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _blas_threads(n: int) -> contextlib.AbstractContextManager:
    """The BLAS libraries on ``n`` threads within the block (nothing without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of fastbp
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")
