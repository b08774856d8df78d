"""How ``cpu-jit`` runs an epoch, measured on this machine (:mod:`fastbp.devices.planner`).

A candidate is ``STRATEGY/LIBRARY``: the GEMM library the compiled steps call (MKL, NumPy's
OpenBLAS, or SciPy's BLAS) and one of

- ``one-thread``: every step on this thread, BLAS on one thread;
- ``overlap``: the same, while another core gathers the next chunk of rows;
- ``two-threads``: two threads of the epoch's own, each with half of every step;
- ``blas-threads``: the BLAS library's own threads split each product.

Every candidate runs chapter 3's techniques (momentum, L1, dropout) in its compiled code
(the `*_tech` epochs of :mod:`fastbp_numba.epoch`), so a plan with them chooses among the
same ones.

The first epoch of a configuration picks the fastest in a short trial of real steps on copies of
the parameters (or takes the recorded choice). Candidates that round differently
(:func:`rounding`) give a seed different numbers, so the choice is recorded once per machine and
configuration, and a run never moves to one that rounds differently (see
:func:`fastbp.devices.planner.choose`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, Callable

import numpy as np

from fastbp.core.plan import EpochPlan, Parameters
from fastbp.devices import planner
from fastbp.devices.cpu import (
    cblas_choice,
    chunk_rows,
    cores,
    find_cblas,
    library_threads,
    load_cblas,
    prefetch_enabled,
    prefetch_mode,
    step_work,
    threaded,
)

from .cache import JitCache
from .loading import retryable_import

log = logging.getLogger("fastbp")

TWO_CORES = ("overlap", "two-threads", "blas-threads")
# Threaded steps of a network with fewer weights than this split over two threads of the
# epoch's own by default (FASTBP_PLAN=off): its products are skinny, and split better by rows of
# the batch; wider networks use the BLAS library's threads. 2-core machine, MKL, samples/s, two
# threads of our own against MKL's: [784,30,10] batch 10000 1.36 M / 0.92 M; [784,100,10] batch
# 1000 0.62 M / 0.55 M, batch 10000 0.58 M / 0.49 M; [784,1024,1024,10] batch 256 / 1024 28.7k /
# 26.5k against 29.7k / 32.7k.
TWO_THREADS_WEIGHTS = 400_000
TRIAL_ROWS = 4096  # rows of one candidate's timed trial; a shorter epoch is not measured
TRIAL_STEPS = 16  # steps of the shortest timed trial at any batch: past thread start-up and caches
TRIAL_SECONDS = 0.04  # a short trial's most seconds (four times that for a long one) ...
TRIAL_MIN_STEPS = 2  # ... but at least this many steps (a big network's steps are long)
# A step this long warms a trial up by itself; shorter ones warm up on a chunk of rows. With the
# 0.04 s trials, planning the big network on the AMD EPYC took 2.3 s at batch 256 and 3.9 s at
# 1024 (was 7.8 and 7.4 s: sixteen trials, each warming up on a chunk, of 0.1 s), the same
# choice five times in five (benchmarks/planner_stability.py)
WARM_STEP_SECONDS = 0.01
SLOW = 0.5  # an epoch below this fraction of its trial's speed means a busy machine
FAST = 1.5  # an epoch above this multiple of its cached trial's speed: the trial was disturbed


def library_names() -> list[str]:
    """The GEMM libraries to try: the one ``$FASTBP_BLAS`` names, else every one found."""
    if cblas_choice() != "auto":
        lib = find_cblas()
        return [lib.name if lib is not None else "scipy"]
    found = [name for name in ("mkl", "openblas") if load_cblas(name) is not None]
    return found or ["scipy"]


def library(name: str) -> Any:
    """A candidate's CBLAS library (:func:`fastbp.devices.cpu.load_cblas`; None: SciPy)."""
    return None if name == "scipy" else load_cblas(name)


def default(sizes: list[int], m: int, rows: int) -> str:
    """The fixed choice (``FASTBP_PLAN=off``): the rules these candidates replace."""
    lib = find_cblas()
    name = lib.name if lib is not None else "scipy"
    two_cores = cores() >= 2 and library_threads() >= 2
    if threaded(sizes, m) and step_work(sizes, 1) < TWO_THREADS_WEIGHTS and two_cores:
        return f"two-threads/{name}"
    if threaded(sizes, m) and library_threads() >= 2:
        return f"blas-threads/{name}"
    overlap = prefetch_mode(sizes, m, threads=False, rows=rows) == "overlap"
    return f"{'overlap' if overlap else 'one-thread'}/{name}"


def candidates(sizes: list[int], m: int, rows: int) -> list[str]:
    """Every candidate that can run here for batches of ``m`` and an epoch of ``rows``."""
    n_cores = cores()
    allowed = ["one-thread"]
    if prefetch_enabled() and n_cores >= 2 and rows > chunk_rows(m):
        allowed.append("overlap")
    if n_cores >= 2 and library_threads() >= 2 and m >= 2:  # one row has no halves
        allowed.append("two-threads")
    if library_threads() >= 2:
        allowed.append("blas-threads")
    # the libraries' own threads last: an OpenMP or OpenBLAS pool keeps spinning for a while
    # after a threaded product, which would slow the candidate timed next (the planner times
    # them after every trial of the others: choose(spins=...))
    return [f"{s}/{lib}" for s in allowed for lib in library_names()]


def fingerprint() -> dict[str, Any]:
    """This machine as the cache knows it: :func:`fastbp.devices.planner.fingerprint` plus the
    GEMM libraries' versions and Numba's."""
    numba = retryable_import("numba")
    libs = {name: getattr(load_cblas(name), "version", None) for name in ("mkl", "openblas")}
    return planner.fingerprint({"numba": numba.__version__, "gemm": libs,
                                "blas_threads": library_threads()})


def rounding(name: str) -> str:
    """How candidate ``name`` rounds: its GEMM library and how it splits a step. ``one-thread``
    and ``overlap`` run the same steps in the same order (``overlap`` only gathers rows ahead on
    another core), so they give the same numbers; ``two-threads`` splits every step in halves
    and ``blas-threads`` leaves the split to the library, each rounding its own way."""
    strategy, library = name.split("/")
    split = {"overlap": "one-thread"}.get(strategy, strategy)
    return f"{split}/{library}"


def blas_threaded(name: str) -> bool:
    """Whether candidate ``name`` runs BLAS on the library's own threads (``blas-threads``),
    whose pool keeps spinning for a while after each product."""
    return name.split("/")[0] == "blas-threads"


def _key(backend: Any, plan: EpochPlan) -> str:
    return planner.config_key(backend.device, list(plan.layers.sizes),
                              int(plan.settings.batch_size), backend.dtype)


def held(backend: Any, plan: EpochPlan) -> planner.Choice | None:
    """The choice :func:`choose` made for ``plan``'s configuration, if it made one."""
    return plan.cache.of(JitCache).choices.get(_key(backend, plan))


def choose(backend: Any, plan: EpochPlan, run: Callable[[Any, str], float]
           ) -> planner.Choice:
    """The candidate for ``plan``'s configuration, kept on the plan for its later epochs:
    recorded, forced, the default, or measured now with ``run(trial_plan, candidate)``."""
    key = _key(backend, plan)
    made = plan.cache.of(JitCache).choices.get(key)
    if made is not None:
        return made
    sizes, m = list(plan.layers.sizes), int(plan.settings.batch_size)
    rows = int(plan.cursor.order.shape[0])
    options = candidates(sizes, m, rows)
    fixed = default(sizes, m, rows)
    measurable = rows >= TRIAL_ROWS
    busy = measurable and planner.mode() in ("auto", "measure") and planner.busy_machine()

    def trials() -> dict[str, Callable[[int], float]]:
        return {name: functools.partial(_trial_of, plan, name, run) for name in options}

    choice = planner.choose(key, options, fixed if fixed in options else options[0], trials,
                            fingerprint(), busy=busy, measurable=measurable, rounding=rounding,
                            spins=[c for c in options if blas_threaded(c)])
    if choice.source == "default, busy":
        log.warning("fastbp: cpu-jit planned %s on a busy machine: the default %s is recorded "
                    "without measuring; run `fastbp tune` on a quiet machine to measure every "
                    "candidate (a seed's numbers may then change once)", key, choice.name)
    else:
        log.info("fastbp: cpu-jit plan for %s: %s", key, choice.describe())
    choice.key = key
    plan.cache.of(JitCache).choices[key] = choice
    return choice


def _trial_of(plan: Any, name: str, run: Callable[[Any, str], float], scale: int) -> float:
    return trial(plan, name, run, scale)


def trial_rows(m: int, scale: int = 1) -> int:
    """Rows of a timed trial at batch ``m``: ``scale`` times :data:`TRIAL_ROWS`, and at least
    :data:`TRIAL_STEPS` steps (whole batches), so a large batch is timed over enough steps to
    get past thread start-up (four steps at batch 1000 once measured ``two-threads`` at a third
    of its speed)."""
    return scale * max(TRIAL_ROWS // m, TRIAL_STEPS) * m


def timed_rows(m: int, warm_rows: int, warm_seconds: float, scale: int = 1) -> int:
    """The most rows a timed trial takes after a warm-up of ``warm_rows`` in ``warm_seconds``:
    what lasts about ``scale`` times :data:`TRIAL_SECONDS` at the warm-up's speed, in whole
    batches, at least :data:`TRIAL_MIN_STEPS` of them. A big network's steps are long enough
    that a few of them time it well (its 16-step trials at batch 1024 made planning 35 s)."""
    per_row = warm_seconds / max(warm_rows, 1)
    fit = int(scale * TRIAL_SECONDS / per_row) if per_row > 0 else 1 << 62
    return max(TRIAL_MIN_STEPS, fit // m) * m


def trial(plan: EpochPlan, name: str, run: Callable[[Any, str], float], scale: int = 1
          ) -> float:
    """Samples/s of candidate ``name`` on the first rows of ``plan.cursor.order``
    (:func:`trial_rows`, no more than :func:`timed_rows` allows), on copies of the parameters and
    velocities (training is not touched): a step to warm up (threads started, code loaded),
    then a chunk of rows where that step took under :data:`WARM_STEP_SECONDS` (rows gathered
    ahead, caches filled), then the timed rows."""
    m = int(plan.settings.batch_size)
    order, params = plan.cursor.order, plan.params
    n = int(order.shape[0])
    rows = min(n, trial_rows(m, scale))
    velocities = None if params.velocities is None else [np.array(v) for v in params.velocities]
    copies = Parameters([np.array(w) for w in params.weights],
                        [np.array(b) for b in params.biases], velocities)
    copy = dataclasses.replace(plan, params=copies)
    warm = min(n, m)  # one step first: a long one warms the candidate up by itself
    copy.start(order[:warm], plan.cursor.seed)
    t0 = time.perf_counter()
    run(copy, name)
    if time.perf_counter() - t0 < WARM_STEP_SECONDS:  # short steps: a whole chunk of them
        warm = min(n, chunk_rows(m))
        copy.start(order[:warm], plan.cursor.seed)
        t0 = time.perf_counter()
        run(copy, name)
    rows = min(rows, timed_rows(m, warm, time.perf_counter() - t0, scale))
    copy.start(order[:rows], plan.cursor.seed)
    t0 = time.perf_counter()
    run(copy, name)
    return rows / max(time.perf_counter() - t0, 1e-9)


def after_epoch(plan: EpochPlan, choice: planner.Choice, seconds: float) -> None:
    """Judge an epoch against its plan's trial. A plan that ran on two cores at under
    :data:`SLOW` of its trial's speed (another process holds a core) moves to a candidate that
    rounds as it does (``overlap`` to ``one-thread``; a split step has none, and keeps its plan:
    a seed's numbers never change mid-run). A recorded choice whose epoch runs at over
    :data:`FAST` times its trial's speed was measured while another process held a core: the
    next run measures it again, against the candidates that round as it does. The first epoch
    of a choice is not judged (it also loads the compiled code and starts the helper thread)."""
    strategy, lib = choice.name.split("/")
    rows = int(plan.cursor.order.shape[0])
    if rows < TRIAL_ROWS:  # a slice of an epoch (the progress bar's) is too short to judge
        return
    choice.epochs += 1
    if not choice.speed or choice.epochs == 1:
        return
    speed = rows / max(seconds, 1e-9)
    if choice.source == "cache" and choice.key and speed > FAST * choice.speed:
        log.info("fastbp: cpu-jit ran an epoch at %.1f× the speed its recorded plan %s measured "
                 "for %s: that trial was disturbed, so the next run measures again",
                 speed / choice.speed, choice.name, choice.key)
        planner.forget(choice.key, fingerprint())
        choice.source = "cache, disturbed"
        return
    if strategy not in TWO_CORES or speed >= SLOW * choice.speed:
        return
    if strategy == "overlap":
        log.warning("fastbp: cpu-jit ran an epoch at %.0f %% of the speed its plan %s measured: "
                    "the machine is busy, so training moves to one-thread/%s (the same numbers)",
                    100 * speed / choice.speed, choice.name, lib)
        choice.name, choice.source = f"one-thread/{lib}", "busy"
    elif choice.source != "busy, kept":
        log.warning("fastbp: cpu-jit ran an epoch at %.0f %% of the speed its plan %s measured: "
                    "the machine is busy; the plan is kept, since one thread would round "
                    "differently (FASTBP_PLAN=one-thread runs on one core)",
                    100 * speed / choice.speed, choice.name)
        choice.source = "busy, kept"
