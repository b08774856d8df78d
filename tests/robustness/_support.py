"""Shared by the robustness suite: fuzzing budgets, time and allocation measurement.

Fuzz tests use ``FUZZ`` (a hypothesis ``settings`` object) rather than a global profile, so they
leave other tests' hypothesis settings alone. ``FASTBP_FUZZ=long`` runs them ~100× longer with a
fresh random seed; ``FASTBP_FUZZ=<n>`` runs ``n`` examples each. CI uses the bounded, derandomized
``fastbp-ci`` profile (200 examples per test).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from hypothesis import HealthCheck, settings

# Every input is answered within 1 s of CPU time (``Budget.cpu``, asserted by the tests). Not
# hypothesis's wall-clock deadline: on a loaded CI machine a stall would make that flaky.
TIME_LIMIT_S = 1.0

settings.register_profile(
    "fastbp-ci", max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fastbp-long", max_examples=20_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz_settings() -> settings:
    """The settings ``$FASTBP_FUZZ`` names: ``ci`` (default), ``long`` or a number of examples."""
    choice = os.environ.get("FASTBP_FUZZ", "ci").strip().lower()
    if choice.isdigit():
        return settings(settings.get_profile("fastbp-long"), max_examples=int(choice))
    return settings.get_profile("fastbp-long" if choice == "long" else "fastbp-ci")


FUZZ = fuzz_settings()


@dataclass
class Budget:
    """What a block cost: wall seconds, CPU seconds of this thread, the tracemalloc peak."""

    seconds: float = 0.0
    cpu: float = 0.0
    peak: int = 0


@contextmanager
def measured() -> Iterator[Budget]:
    """Measure the wall time and the peak of traced allocations (NumPy's included) of a block."""
    budget = Budget()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        yield budget
    finally:
        budget.seconds = time.perf_counter() - t0
        budget.cpu = time.thread_time() - c0
        budget.peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
