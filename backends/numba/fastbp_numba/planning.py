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

The first steps of a configuration are its trials (:func:`schedule`): real training steps, each
candidate's in turn, timed; the last of them settles the fastest, which is recorded and runs the
rest. Candidates that round differently (:func:`rounding`) give a seed different numbers, so the
trials are the same steps in every run of the configuration (a run that reads the recorded choice
back trains them too, and gets the numbers of the run that measured), the choice is recorded once
per machine and configuration, and a run never moves to one that rounds differently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from fastbp.core.plan import EpochPlan
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
from .sources import kernels_digest

log = logging.getLogger("fastbp")

TWO_CORES = ("overlap", "two-threads", "blas-threads")
# Threaded steps of a network with fewer weights than this split over two threads of the
# epoch's own by default (FASTBP_PLAN=off): its products are skinny, and split better by rows of
# the batch; wider networks use the BLAS library's threads. 2-core machine, MKL, samples/s, two
# threads of our own against MKL's: [784,30,10] batch 10000 1.36 M / 0.92 M; [784,100,10] batch
# 1000 0.62 M / 0.55 M, batch 10000 0.58 M / 0.49 M; [784,1024,1024,10] batch 256 / 1024 28.7k /
# 26.5k against 29.7k / 32.7k.
TWO_THREADS_WEIGHTS = 400_000
TRIAL_ROWS = 4096  # rows of a timed trial of short steps: two chunks gathered ahead at least ...
TRIAL_WORK = 300_000_000  # ... and about this many multiply-adds (at most four times as many)
ROUNDS = 3  # timed trials of each candidate, in turn; the median counts
TRIAL_EPOCHS = 2  # the trials of every candidate fit this many epochs where steps allow
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
    GEMM libraries' versions, Numba's, and the compiled steps' own (:func:`kernels_digest`)."""
    numba = retryable_import("numba")
    libs = {name: getattr(load_cblas(name), "version", None) for name in ("mkl", "openblas")}
    return planner.fingerprint({"numba": numba.__version__, "gemm": libs,
                                "blas_threads": library_threads(),
                                "kernels": kernels_digest()})


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


@dataclass(frozen=True)
class Trial:
    """Real training steps ``start`` to ``start + steps`` of a run (counted from the first
    step of its first epoch) run as candidate ``name``; ``timed`` unless it warms the candidate
    up (its first call loads code and starts threads)."""

    name: str
    start: int
    steps: int
    timed: bool


def trial_steps(sizes: list[int], m: int, rows: int, count: int) -> tuple[int, int]:
    """Steps of one trial at batch ``m``: ``(warm, timed)``. The timed steps hold
    :data:`TRIAL_ROWS` rows (a candidate that gathers rows ahead is timed on whole chunks) and
    about :data:`TRIAL_WORK` multiply-adds (``3 m Σ n_l n_{l-1}`` a step: feedforward, BP2,
    BP4), whichever is more, but no more than four times that work (a big network's step times
    well by itself); the warm-up before them a chunk of rows, or a step where one step holds
    that work (the first round's warm-ups are as long as a timed trial: :func:`schedule`). Both
    shrink so that ``count`` candidates' trials fit :data:`TRIAL_EPOCHS` epochs of ``rows``,
    one step each at least."""
    step = 3 * step_work(sizes, m)
    by_work = -(-TRIAL_WORK // step)
    timed = min(max(by_work, -(-TRIAL_ROWS // m)), -(-4 * TRIAL_WORK // step))
    warm = min(chunk_rows(m) // m, by_work)
    each = TRIAL_EPOCHS * (rows // m) // count  # a candidate's steps, every round
    warm = max(1, min(warm, each // (3 * ROUNDS)))
    return warm, max(1, min(timed, (each - (ROUNDS - 1) * warm) // (ROUNDS + 1)))


def groups(options: list[str]) -> list[list[str]]:
    """The candidates in the order their trials run: the others, then those whose BLAS pool
    keeps spinning after them (``blas-threads``), which would slow whatever is timed next."""
    quiet = [c for c in options if not blas_threaded(c)]
    return [g for g in (quiet, [c for c in options if blas_threaded(c)]) if g]


Finalists = list[list[list[str]]]  # per group, per round after the first: who takes it


def schedule(sizes: list[int], m: int, rows: int, options: list[str],
             finalists: Finalists | None = None) -> tuple[Trial, ...]:
    """The trials of a configuration: a function of it, of the candidates and of the
    ``finalists`` recorded with its plan, so every run of it (the one that measures, and every
    one that reads its choice back) trains the same steps the same way, and a seed gives the
    same numbers. Each candidate's trial is a warm-up (untimed: a candidate's first call loads
    its code, and the one before may have left the other core busy) right before its timed
    steps (:func:`trial_steps`; in the first round a warm-up as long as the timed steps: a
    core idle until then takes a few milliseconds to run at its speed). Group by group
    (:func:`groups`), :data:`ROUNDS` rounds in turn, so a disturbance falls on one trial of
    each: every candidate of the group takes the first, and after each round only that
    round's finalists (``finalists[g][r]``, chosen by :func:`finalists_of` from the trials so
    far; every candidate where ``finalists`` is ``None``) take the next. The trials end where
    the next finalists are not known yet. Empty for an epoch under :data:`TRIAL_ROWS` rows or
    a single candidate."""
    if rows < TRIAL_ROWS or len(options) < 2:
        return ()
    warm, timed = trial_steps(sizes, m, rows, len(options))
    trials: list[Trial] = []

    def add(names: Sequence[str], warm: int = warm) -> None:
        for name in names:
            start = trials[-1].start + trials[-1].steps if trials else 0
            trials.extend([Trial(name, start, warm, False), Trial(name, start + warm, timed, True)])

    for g, group in enumerate(groups(options)):
        add(group, warm=timed)  # a candidate's first trial: a second core may be slow to wake
        known = None if finalists is None else finalists[g] if g < len(finalists) else []
        for r in range(ROUNDS - 1):
            if known is not None and r >= len(known):
                return tuple(trials)
            add(group if known is None else [c for c in group if c in known[r]])
    return tuple(trials)


KEEP = (0.7, 0.8)  # after round r + 1, a candidate below this share of the fastest is done
# ... but after the first round, one that computes on two cores only below this share: a second
# core runs in slow stretches on some machines (2-vCPU AMD EPYCs: for seconds or minutes, at
# 0.4–0.5 of its speed), and a first trial that falls in one halves such a candidate's speed
KEEP_TWO_CORES = 0.4


def on_two_cores(name: str) -> bool:
    """Whether candidate ``name`` computes on two cores (``two-threads``, ``blas-threads``)."""
    return name.split("/")[0] in ("two-threads", "blas-threads")


def keep_share(name: str, rounds: int) -> float:
    """The share of the fastest below which candidate ``name`` is done after ``rounds + 1``
    rounds (:data:`KEEP`, :data:`KEEP_TWO_CORES`)."""
    return KEEP_TWO_CORES if rounds == 0 and on_two_cores(name) else KEEP[rounds]


def finalists_of(previous: list[str], best: dict[str, float], rounds: int) -> list[str]:
    """Who of ``previous`` (the candidates of round ``rounds + 1``) takes the next round: those
    whose fastest trial so far (``best``: a disturbance only slows a trial) ran at
    :func:`keep_share` or more of the fastest candidate's. (The default needs no more trials to
    be beaten by more than :data:`~fastbp.devices.planner.MARGIN` where it is that far
    behind.)"""
    top = max(best.values(), default=0.0)
    return [c for c in previous if best.get(c, 0.0) >= keep_share(c, rounds) * top]


def every_round(options: list[str]) -> Finalists:
    """The finalists where every candidate takes every round (a plan recorded without them)."""
    return [[list(group) for _ in range(ROUNDS - 1)] for group in groups(options)]


@dataclass
class Trials:
    """A configuration's trials in this network: its candidates and the ``finalists`` known
    (:func:`schedule`), the rows and seconds each timed trial has run so far (a trial may run
    in slices), the candidates that failed, and whether the choice is still to be made from
    them (``measuring``: the candidates ``eligible``, against ``default``)."""

    sizes: list[int]
    m: int
    rows_in_epoch: int
    options: list[str]
    finalists: Finalists | None
    measuring: bool
    eligible: list[str] = field(default_factory=list)
    default: str = ""
    rows: dict[int, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    mark: planner.LoadMark | None = None
    spent: float = 0.0  # seconds of every trial, warm-ups included ...
    spent_rows: int = 0  # ... and their rows
    unsaved: bool = False  # finalists chosen that the cache does not hold yet (save)
    schedule: tuple[Trial, ...] = ()

    def __post_init__(self) -> None:
        self.plan_trials()

    def plan_trials(self) -> None:
        """The trials as far as the finalists known lay them out (:func:`schedule`)."""
        self.schedule = schedule(self.sizes, self.m, self.rows_in_epoch, self.options,
                                 self.finalists)

    @property
    def complete(self) -> bool:
        """Whether every round's finalists are known (the trials are all laid out)."""
        return self.finalists is None or (
            len(self.finalists) >= len(groups(self.options))
            and all(len(rounds) >= ROUNDS - 1 for rounds in self.finalists))

    @property
    def end(self) -> int:
        """The first step after the trials laid out."""
        return self.schedule[-1].start + self.schedule[-1].steps if self.schedule else 0

    def figures(self) -> dict[str, list[float]]:
        """Each candidate's samples/s in each of its timed trials that ran."""
        figures: dict[str, list[float]] = {}
        for i, t in enumerate(self.schedule):
            if t.timed and self.seconds.get(i, 0.0) > 0 and t.name not in self.failed:
                figures.setdefault(t.name, []).append(self.rows[i] / self.seconds[i])
        return figures

    def speeds(self) -> dict[str, float]:
        """Each candidate's samples/s: the median of its timed trials (of two, the faster)."""
        return {name: sorted(f)[len(f) // 2] for name, f in self.figures().items()}

    def record(self, key: str, name: str, speeds: dict[str, float], cost: float = 0.0,
               busy: bool = False, pending: bool = False) -> None:
        """Record ``name`` for ``key`` with the finalists these trials ran (every candidate
        in every round where none were chosen), which a later run lays its trials out by;
        ``pending``: a measurement under way, ``name`` standing in for its choice."""
        extra: dict[str, Any] = {"finalists": self.finalists or every_round(self.options)}
        if pending:
            extra["pending"] = True
        planner._record(key, name, speeds, cost, fingerprint(), None, busy=busy, extra=extra)


def held(backend: Any, plan: EpochPlan) -> planner.Choice | None:
    """The choice :func:`choose` made for ``plan``'s configuration, if it made one."""
    return plan.cache.of(JitCache).choices.get(_key(backend, plan))


def choose(backend: Any, plan: EpochPlan) -> planner.Choice:
    """The candidate for ``plan``'s configuration, kept on the plan for its later epochs:
    forced, the default, recorded, or ``measuring``: the choice is made on real steps of the
    first epochs (:func:`schedule`, :func:`run_epoch`), the default standing until then.

    A recorded choice runs the same trials first (so a seed gives the numbers of the run
    that measured, whatever the cache held), and a forced or fixed one none."""
    key = _key(backend, plan)
    jit = plan.cache.of(JitCache)
    made = jit.choices.get(key)
    if made is not None:
        return made
    sizes, m = list(plan.layers.sizes), int(plan.settings.batch_size)
    rows = int(plan.data.n)
    options = candidates(sizes, m, rows)
    fixed = default(sizes, m, rows)
    fixed = fixed if fixed in options else options[0]
    found = planner.lookup(key, options, fixed, fingerprint(), rounding=rounding)
    recorded = found.entry.get("finalists")
    finalists = None if recorded is None and not found.entry.get("pending") else recorded or []
    measurable = bool(schedule(sizes, m, rows, options, []))
    if found.choice is not None:
        choice = found.choice
        if found.recorded is not None and measurable:  # the trials the choice was made on
            jit.trials[key] = Trials(sizes, m, rows, options, finalists, measuring=False)
    elif not measurable:
        choice = found.recorded or planner.Choice(fixed, "default, too few rows to measure")
    else:
        choice = planner.Choice(found.default, "measuring")
        jit.trials[key] = Trials(sizes, m, rows, options, finalists if found.entry else [],
                                 True, found.eligible, found.default)
    choice.key = key
    if choice.source != "measuring":
        log.info("fastbp: cpu-jit plan for %s: %s", key, choice.describe())
    jit.choices[key] = choice
    return choice


def steps_per_epoch(plan: EpochPlan) -> int:
    """Mini-batches in one epoch of ``plan``'s training data (the last may be short)."""
    return -(-int(plan.data.n) // int(plan.settings.batch_size))


def run_epoch(plan: EpochPlan, choice: planner.Choice, run: Callable[[Any, str], float]
              ) -> tuple[float, bool]:
    """``plan``'s epoch (or slice: ``plan.cursor``) run as planned: the steps that fall on
    the configuration's trials as each trial's candidate, timed, the rest as ``choice``. Where
    the choice is being measured, the trials decide each round's finalists when the round ends
    (:func:`advance`), and the choice after the last; where it was recorded, they check it
    (:func:`check`). Returns the summed cost and whether any trial ran in it (such an epoch
    says nothing of the choice's speed)."""
    trials = plan.cache.of(JitCache).trials.get(choice.key)
    cursor, m = plan.cursor, int(plan.settings.batch_size)
    order = cursor.order
    steps = -(-int(order.shape[0]) // m)
    first = cursor.epoch * steps_per_epoch(plan) + cursor.first_step
    total, done, ran, i = 0.0, 0, False, 0
    try:
        while trials is not None and i < len(trials.schedule):
            t = trials.schedule[i]
            a, b = max(t.start, first), min(t.start + t.steps, first + steps)
            if a < b:
                if (trials.measuring and a == t.start and not t.timed
                        and not blas_threaded(t.name)):
                    # a quiet candidate's trial starts: no thread of this process left
                    # spinning (a BLAS pool, the caller's or an evaluation's) is timed beside it
                    trials.spent += planner.settle()
                if trials.mark is None:
                    trials.mark = planner.load_mark()
                plan.start(order[(a - first) * m:(b - first) * m], cursor.seed,
                           cursor.first_step + a - first, cursor.epoch)
                rows = int(plan.cursor.order.shape[0])
                t0 = time.perf_counter()
                total += _guarded(plan, t.name, run, trials, choice)
                seconds = time.perf_counter() - t0
                trials.spent, trials.spent_rows = trials.spent + seconds, trials.spent_rows + rows
                if t.timed:
                    trials.rows[i] = trials.rows.get(i, 0) + rows
                    trials.seconds[i] = trials.seconds.get(i, 0.0) + seconds
                done, ran = b - first, True
            i += 1
            if i == len(trials.schedule) and first + steps >= trials.end:
                if not trials.measuring and ran:  # the call that ran the last trial
                    check(choice, trials)
                while trials.measuring and i == len(trials.schedule):  # until more trials
                    advance(plan, choice, trials, started_past=not trials.rows)
        if trials is not None and trials.unsaved:
            save(choice, trials)
        if done < steps:
            plan.start(order[done * m:], cursor.seed, cursor.first_step + done, cursor.epoch)
            total += _guarded(plan, choice.name, run, None, choice)
    finally:
        plan.cursor = cursor
    return total, ran


def save(choice: planner.Choice, trials: Trials) -> None:
    """Record the finalists chosen so far with the measurement under way (the default stands
    in the choice's place), once per call that chose some: a later run, however short this one
    is, trains the same trials."""
    trials.unsaved = False
    trials.record(choice.key, trials.default, {}, pending=True)


def advance(plan: EpochPlan, choice: planner.Choice, trials: Trials, started_past: bool
            ) -> None:
    """The trials laid out have run: the next round's finalists (recorded before the call
    ends: :func:`save`), or, after the last round, the choice (:func:`decide`). A run that
    timed none of them (one resumed past them, with no choice recorded) keeps the default and
    records nothing."""
    if started_past:
        trials.measuring = False
        choice.source = "default, started past its trials"
        log.info("fastbp: cpu-jit plan for %s: %s", choice.key, choice.describe())
        return
    if trials.complete:
        decide(choice, trials)
        return
    finalists = trials.finalists
    assert finalists is not None  # not complete
    options = groups(trials.options)
    g = next(i for i, group in enumerate(options) if trials.schedule[-1].name in group)
    if g == len(finalists):  # the group's first round has run
        finalists.append([])
    rounds = finalists[g]
    best = {k: max(f) for k, f in trials.figures().items() if k in trials.eligible}
    previous = rounds[-1] if rounds else options[g]
    kept = [c for c in finalists_of(previous, best, len(rounds))
            if c not in trials.failed]
    rounds.append(kept)
    trials.plan_trials()
    trials.unsaved = True


def _guarded(plan: EpochPlan, name: str, run: Callable[[Any, str], float],
             trials: Trials | None, choice: planner.Choice) -> float:
    """``run(plan, name)``; where a candidate of two cores cannot run here (a thread, ...),
    the parameters are put back and the steps run again as ``one-thread`` (the same numbers
    every time it fails so): the trial's candidate is left out of the choice, a chosen one is
    replaced for the rest of the run."""
    strategy, lib = name.split("/")
    if strategy == "one-thread":
        return run(plan, name)
    params = plan.params.arrays()
    saved = [np.array(a) for a in params]
    try:
        return run(plan, name)
    except (RuntimeError, OSError) as exc:
        for dst, src in zip(params, saved):
            dst[...] = src
        fallback = f"one-thread/{lib}"
        if trials is not None:
            trials.failed.add(name)
            planner._warn_once(f"trial {name}", f"fastbp: the plan candidate {name} failed its "
                               f"trial ({type(exc).__name__}: {exc}); it is not used")
        else:
            log.warning("fastbp: cpu-jit's plan %s failed (%s: %s); its steps run again as "
                        "%s, and so do the next", name, type(exc).__name__, exc, fallback)
            choice.name, choice.source = fallback, "fallback"
        return run(plan, fallback)


def decide(choice: planner.Choice, trials: Trials) -> None:
    """Settle a choice being measured from its trials: the fastest eligible candidate (the
    default unless one is :data:`~fastbp.devices.planner.MARGIN` faster), recorded with the
    finalists its trials ran; on a machine that other processes kept busy during the trials,
    the default, recorded as such (``auto``) or nothing (``measure``, ``fastbp tune``). What
    measuring cost (``choice.seconds``): the trials' time beyond what the chosen candidate
    would have taken for their rows."""
    trials.measuring = trials.unsaved = False  # this record holds the finalists too
    speeds = {k: v for k, v in trials.speeds().items() if k in trials.eligible}
    if not speeds:
        choice.source = "default, no trial ran"
        log.info("fastbp: cpu-jit plan for %s: %s", choice.key, choice.describe())
        return
    best = planner.fastest(speeds, trials.default)
    cost = max(0.0, trials.spent - trials.spent_rows / speeds[best])
    busy = planner.busy_since(trials.mark)
    if busy and planner.mode() == "auto":
        trials.record(choice.key, trials.default, {}, busy=True)
        choice.name, choice.source = trials.default, "default, busy"
        log.warning("fastbp: cpu-jit planned %s on a busy machine: the default %s is recorded "
                    "without measuring; run `fastbp tune` on a quiet machine to measure every "
                    "candidate (a seed's numbers may then change once)", choice.key, choice.name)
        return
    choice.name, choice.speeds, choice.seconds = best, speeds, cost
    if busy:
        choice.source = "measured on a busy machine, not recorded"
    else:
        trials.record(choice.key, best, speeds, cost)
        choice.source = "measured"
    log.info("fastbp: cpu-jit plan for %s: %s", choice.key, choice.describe())


CHECK = 1.25  # a recorded choice this much slower than another in a run's trials is said


def check(choice: planner.Choice, trials: Trials) -> None:
    """A recorded choice held against this run's own trials (the trials it was chosen on, run
    again): where a candidate ran :data:`CHECK` times as fast as it, one that rounds as it
    does takes its place from here on, recorded (the same numbers), and one that rounds
    otherwise is named, with ``fastbp tune`` to measure again (a seed's numbers would change
    once)."""
    speeds = {k: v for k, v in trials.speeds().items() if k not in trials.failed}
    mine = speeds.get(choice.name)
    if not mine:
        return
    same = [k for k in speeds if rounding(k) == rounding(choice.name)]
    best = max(same, key=speeds.__getitem__)
    if speeds[best] >= CHECK * mine:
        log.info("fastbp: cpu-jit's recorded plan %s for %s ran at %.0f %% of %s in this run's "
                 "trials: %s runs the rest, and is recorded (the same numbers)", choice.name,
                 choice.key, 100 * mine / speeds[best], best, best)
        choice.name, choice.source, choice.speeds = best, "cache, checked", speeds
        trials.record(choice.key, best, speeds)
        return
    fastest = max(speeds, key=speeds.__getitem__)
    if speeds[fastest] >= CHECK * mine:
        log.info("fastbp: cpu-jit's recorded plan %s for %s ran at %.0f %% of %s in this run's "
                 "trials; `fastbp tune` measures every candidate again (a seed's numbers may "
                 "then change once)", choice.name, choice.key, 100 * mine / speeds[fastest],
                 fastest)


def after_epoch(plan: EpochPlan, choice: planner.Choice, seconds: float,
                mark: planner.LoadMark | None = None) -> None:
    """Judge an epoch against its plan's trial (``mark``: the load when it started, to tell
    other processes from a slow core: :func:`fastbp.devices.planner.busy_since`). A plan that
    ran on two cores at under :data:`SLOW` of its trial's speed (another process holds a core,
    or the machine's host slows one) moves to a candidate that rounds as it does (``overlap``
    to ``one-thread``; a split step has none, and keeps its plan: a seed's numbers never
    change mid-run). A recorded choice whose epoch runs at over :data:`FAST` times its trial's
    speed was measured while another process held a core: the next run measures it again,
    against the candidates that round as it does. The first epoch of a choice is not judged
    (it also loads the compiled code and starts the helper thread), nor one that ran trials
    (:func:`run_epoch`)."""
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
    why = ("the machine is busy" if planner.busy_since(mark) else
           "a core ran slow with nothing else running (a virtual machine's host can do that)")
    if strategy == "overlap":
        log.warning("fastbp: cpu-jit ran an epoch at %.0f %% of the speed its plan %s measured: "
                    "%s, so training moves to one-thread/%s (the same numbers)",
                    100 * speed / choice.speed, choice.name, why, lib)
        choice.name, choice.source = f"one-thread/{lib}", "busy"
    elif choice.source != "busy, kept":
        log.warning("fastbp: cpu-jit ran an epoch at %.0f %% of the speed its plan %s measured: "
                    "%s; the plan is kept, since one thread would round differently "
                    "(FASTBP_PLAN=one-thread runs on one core)",
                    100 * speed / choice.speed, choice.name, why)
        choice.source = "busy, kept"
