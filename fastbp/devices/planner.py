"""The planner: how a device runs a training configuration is measured on this machine, not
taken from constants tuned on another.

For a configuration (device, layer sizes, batch size, dtype) a device offers candidate ways of
running its epoch (one thread or two, which GEMM library, gathering ahead, a CUDA graph or not).
The planner times each on a trial of real steps (``cpu-jit``'s are the first training steps
themselves, the same in every run: :mod:`fastbp_numba.planning`), keeps the fastest, and caches
the choice per machine fingerprint (CPU model, core count, library versions, the BLAS
environment variables) in the user cache, so the second run measures nothing. As FFTW's wisdom
does. A device
with hardware of its own (a GPU) keeps its plans in a section of the same file, under a
fingerprint that names that hardware too.

``$FASTBP_PLAN``: ``auto`` (default: the cache, else measure), ``measure`` (measure again and
rewrite the cache), ``off`` (the device's fixed defaults, for benchmarking the defaults
themselves), or a candidate's name (``two-threads/mkl``, or only its first part) to force it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

from ..errors import ConfigError
from .plancache import (  # noqa: F401 - the cache's names, as callers have always used them
    CACHE_ENV,
    FORMAT,
    FORMAT_VERSION,
    MAX_CACHE_BYTES,
    _jsonable,
    _warn_once,
    _warned,
    cache_path,
    damaged_entry,
    forget,
    load_cache,
    read_cache,
    write_cache,
)

log = logging.getLogger("fastbp")

ENV_VAR = "FASTBP_PLAN"
MODES = ("auto", "measure", "off")
# Environment variables that change what the candidates do, so belong to the fingerprint.
ENV_KEYS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "FASTBP_BLAS",
            "FASTBP_THREADED_WORK", "FASTBP_PREFETCH", "CUDA_VISIBLE_DEVICES")


@dataclass
class Choice:
    """How one configuration runs: the candidate's ``name``, where the choice came from
    (``measured``, ``cache``, ``default``, ``forced``, ``busy``), and the measured samples/s of
    every candidate (empty unless measured here or cached)."""

    name: str
    source: str
    speeds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # what measuring cost
    epochs: int = 0  # epochs run with this choice (the first also loads and warms the code)
    key: str = ""  # the configuration it is for (config_key)

    @property
    def speed(self) -> float | None:
        """The chosen candidate's measured samples/s, if known."""
        return self.speeds.get(self.name)

    def describe(self) -> str:
        speed = f", {self.speed:,.0f} samples/s in its trial" if self.speed else ""
        cost = f", measuring cost {self.seconds:.2f} s" if self.source == "measured" else ""
        return f"{self.name} ({self.source}{speed}{cost})"


def mode() -> str:
    """``$FASTBP_PLAN``, checked: a mode of :data:`MODES` or a candidate's name."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value in MODES:
        return value
    if not all(c.isalnum() or c in "-/_" for c in value):
        raise ConfigError(f"{ENV_VAR}={value!r}: use auto, measure, off or a candidate's name "
                          "(fastbp tune lists them)")
    return value


def fingerprint(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What makes timings of this machine comparable: CPU model, cores, Python and library
    versions, the BLAS environment variables, and ``extra`` (a device's own: its GEMM
    libraries' versions, a GPU's name)."""
    import numpy as np

    from .cpu.backend import cpu_model

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "numpy": np.__version__,
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
    }
    info.update(extra or {})
    return info


def config_key(device: str, sizes: Sequence[int], batch_size: int, dtype: str,
               extra: str = "") -> str:
    """The cache key of one training configuration, e.g. ``cpu-jit [784,30,10] m=10 float32``."""
    key = f"{device} [{','.join(str(s) for s in sizes)}] m={batch_size} {dtype}"
    return f"{key} {extra}".strip()


def digest(machine: Mapping[str, Any]) -> str:
    """A short hash of a fingerprint, for messages."""
    return hashlib.sha256(json.dumps(_jsonable(machine), sort_keys=True).encode()).hexdigest()[:12]


FINALISTS = 4  # candidates measured again, on a trial four times as long
ROUNDS = 3  # long trials of each finalist, in turn; the median decides
MARGIN = 0.05  # a candidate replaces the device's default only when this much faster


def measure(trials: Mapping[str, Callable[[int], float]], keep: str | None = None,
            spins: Collection[str] = ()) -> tuple[dict[str, float], float]:
    """Samples/s of each candidate, by successive halving: every candidate on a short trial
    (``trial(1)`` runs it and returns samples/s), then the :data:`FINALISTS` fastest, in turn,
    :data:`ROUNDS` times on one four times as long (``trial(4)``), whose median decides: a short
    trial favours what starts fast over what runs fast, and a moment of noise, either way, moves
    no median. A candidate whose trial fails, the first or a later one, is left out, saying why
    once. ``keep`` (the device's default) is always among the finalists.

    ``spins``: candidates whose threads keep spinning for a while after their trial (a BLAS
    library's pool), which would slow whatever is timed next on the other core. Every trial of
    the others, short and long, runs before any of theirs, so none of the others is timed beside
    a spinning pool (a two-thread candidate measured a third below its speed that way). Returns
    the speeds and the seconds measuring took."""
    t0 = time.perf_counter()
    speeds: dict[str, float] = {}
    failed: set[str] = set()

    def run(name: str, scale: int) -> None:
        if name in failed:
            return
        try:
            speeds[name] = float(trials[name](scale))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is not chosen
            failed.add(name)
            speeds.pop(name, None)
            _warn_once(f"trial {name}", f"fastbp: the plan candidate {name} failed its "
                       f"trial ({type(exc).__name__}: {exc}); it is not used")

    def long_rounds(finalists: Sequence[str]) -> None:
        long: dict[str, list[float]] = {name: [] for name in finalists}
        for _ in range(ROUNDS):  # in turn, so that a disturbance falls on one round of each
            for name in finalists:
                run(name, 4)
                if name in speeds and name not in failed:
                    long[name].append(speeds[name])
        for name, figures in long.items():
            if figures and name not in failed:
                speeds[name] = sorted(figures)[len(figures) // 2]

    quiet = [name for name in trials if name not in spins]
    spinning = [name for name in trials if name in spins]
    for name in quiet:
        run(name, 1)
    # the quiet finalists (the fastest quiet ones, and the default) take their long trials
    # before any spinning pool starts; then the spinning candidates take theirs, the long ones
    # if they are among the fastest of all
    fastest = sorted(speeds, key=speeds.__getitem__, reverse=True)[:FINALISTS]
    long_rounds([name for name in quiet if name in fastest or name == keep])
    for name in spinning:
        run(name, 1)
    fastest = sorted(speeds, key=speeds.__getitem__, reverse=True)[:FINALISTS]
    long_rounds([name for name in spinning if name in fastest or name == keep])
    for name in failed:
        speeds.pop(name, None)
    return speeds, time.perf_counter() - t0


@dataclass
class Lookup:
    """What the mode and the cache say of a configuration: a settled ``choice`` (forced, the
    default, recorded), or ``None`` and what to measure: the ``eligible`` candidates and the
    ``default`` that stands unless one is clearly faster; ``recorded`` the cache's choice,
    also where it is marked for measuring again; ``entry`` the cache's entry as it is (a
    device may keep more in it: a measurement under way, the trials that led to the choice)."""

    choice: Choice | None
    eligible: list[str]
    default: str
    recorded: Choice | None = None
    entry: dict[str, Any] = field(default_factory=dict)


def lookup(key: str, candidates: Sequence[str], default: str, machine: Mapping[str, Any],
           section: str | None = None, rounding: Callable[[str], str] | None = None) -> Lookup:
    """The choice ``$FASTBP_PLAN`` forces (a candidate's name; ``off``: ``default``), the one
    recorded in ``section`` of the cache (``auto``), or what to measure: every candidate
    (nothing recorded, or ``measure``), or, for a recorded choice marked for measuring again
    (:func:`forget`), the candidates that round as it does (``rounding(name)``), against it."""
    how = mode()
    if how == "off":
        return Lookup(Choice(default, "default"), [], default)
    if how not in ("auto", "measure"):
        named = [c for c in candidates if c == how or c.split("/")[0] == how]
        if not named:
            raise ConfigError(f"{ENV_VAR}={how!r} is not a candidate for {key}; candidates: "
                              f"{', '.join(candidates)} (or auto, measure, off)")
        return Lookup(Choice(named[0], "forced"), [], default)
    # read_cache has left out every damaged entry (plancache.damaged_entry: speeds are finite
    # numbers, the choice a name)
    found = read_cache(machine, section).get(key) if how == "auto" else None
    entry: dict[str, Any] = found if isinstance(found, dict) else {}
    recorded = entry.get("choice")
    if entry.get("pending"):  # a measurement under way (a device's own): go on with it
        return Lookup(None, list(candidates), default, entry=entry)
    if isinstance(recorded, str) and recorded in candidates:
        speeds = {str(k): float(v) for k, v in entry.get("speeds", {}).items()}
        cached = Choice(recorded, "cache", speeds)
        if not entry.get("remeasure"):
            return Lookup(cached, [], default, cached, entry)
        same = [c for c in candidates if rounding is None or rounding(c) == rounding(recorded)]
        return Lookup(None, same, recorded, cached, entry)
    return Lookup(None, list(candidates), default)


def fastest(speeds: Mapping[str, float], default: str) -> str:
    """The fastest of ``speeds``, unless it is within :data:`MARGIN` of ``default``'s: within
    the trials' noise the fixed rule stands."""
    best = max(speeds, key=speeds.__getitem__)
    if default in speeds and speeds[best] < (1 + MARGIN) * speeds[default]:
        return default
    return best


def choose(key: str, candidates: Sequence[str], default: str,
           trials: Callable[[], Mapping[str, Callable[[int], float]]],
           machine: Mapping[str, Any], busy: bool = False, section: str | None = None,
           measurable: bool = True, rounding: Callable[[str], str] | None = None,
           spins: Collection[str] = ()) -> Choice:
    """The candidate to run ``key`` with: forced by ``$FASTBP_PLAN``, the fixed ``default``
    (``off``), the recorded choice, or measured now (``trials()`` builds the trial callables)
    and recorded (in ``section`` of the cache, for a device with a fingerprint of its own).

    Candidates that round differently (``rounding(name)`` names how a candidate rounds: its
    GEMM library, how it splits a step) give a seed different numbers, so the choice is made
    once per machine and configuration and recorded, never per run: on a ``busy`` machine
    (where another process would skew the trials) the ``default`` is recorded instead of a
    measurement, and a recorded choice marked for measuring again (:func:`forget`) is measured
    only against the candidates that round as it does. ``fastbp tune`` (``FASTBP_PLAN=measure``)
    measures every candidate anew. A plan too short for a trial (``measurable=False``: a
    benchmark's single step, a small test) takes the recorded choice or the default, and
    records nothing: a trial of a few rows would rank the candidates by noise."""
    found = lookup(key, candidates, default, machine, section, rounding)
    if found.choice is not None:
        return found.choice
    if found.recorded is not None and (not measurable or busy):
        return found.recorded
    if not measurable:
        return Choice(default, "default, too few rows to measure")
    if busy and mode() == "auto":
        _record(key, default, {}, 0.0, machine, section, busy=True)
        return Choice(default, "default, busy")
    made = trials()
    speeds, seconds = measure({c: made[c] for c in found.eligible if c in made},
                              keep=found.default, spins=spins)
    if not speeds:
        return Choice(found.default, "default")
    best = fastest(speeds, found.default)
    if busy:  # asked to measure (fastbp tune) while another process skews every trial
        return Choice(best, "measured on a busy machine, not recorded", speeds, seconds)
    _record(key, best, speeds, seconds, machine, section, busy=False)
    return Choice(best, "measured", speeds, seconds)


def _record(key: str, choice: str, speeds: Mapping[str, float], seconds: float,
            machine: Mapping[str, Any], section: str | None, busy: bool,
            extra: Mapping[str, Any] | None = None) -> None:
    """Record ``choice`` for ``key`` (re-reading the cache: another process may have added
    plans), with a device's ``extra`` fields."""
    plans = read_cache(machine, section)
    plans[key] = {"choice": choice, "speeds": dict(speeds), "measured_s": round(seconds, 4),
                  "busy": busy, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})}
    write_cache(machine, plans, section)


LoadMark = tuple[float, float, float]  # the machine's busy CPU time, this process's, the time


def load_mark() -> LoadMark | None:
    """Where the machine's and this process's CPU times stand now (:func:`others_since`);
    ``None`` where ``/proc/stat`` cannot be read."""
    try:
        return _machine_busy(), _own_cpu(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return None


def others_since(mark: LoadMark | None) -> float:
    """How many cores other processes kept busy since ``mark`` (:func:`load_mark`): the
    machine's busy CPU time less this process's own, over the wall time; where ``/proc/stat``
    cannot be read, the 1-minute load average less one."""
    now = load_mark()
    if mark is None or now is None:
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except (OSError, AttributeError):
            return 0.0
    wall = max(now[2] - mark[2], 1e-9)
    return max(0.0, ((now[0] - mark[0]) - (now[1] - mark[1])) / wall)


def others_load(window: float = 0.1) -> float:
    """How many cores other processes kept busy over the last ``window`` seconds, while this
    process waits (:func:`others_since`)."""
    mark = load_mark()
    time.sleep(window)
    return others_since(mark)


def _machine_busy() -> float:
    """Seconds of CPU time the whole machine has spent busy since boot (every core)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    return time.process_time()  # every thread's, to the nanosecond


SETTLE_SECONDS = 0.2  # the longest settle() waits (an OpenBLAS pool spins ~0.1 s)


def settle(longest: float = SETTLE_SECONDS) -> float:
    """Wait until no other thread of this process keeps a core busy (a BLAS library's pool
    spins for a while after its last product, on the core a trial would need), in 1-ms looks,
    ``longest`` seconds at most; returns the seconds waited. It changes no numbers, so a
    measurement's trials start with it."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < longest:
        own, here = time.process_time(), time.thread_time()
        time.sleep(0.001)
        if (time.process_time() - own) - (time.thread_time() - here) < 0.0004:
            break
    return time.perf_counter() - t0


BUSY_CORES = 0.5  # other processes keeping this much of a core busy make a machine busy


def busy_machine() -> bool:
    """Whether other processes keep at least half a core of this machine busy (it waits
    0.1 s to tell)."""
    return others_load() >= BUSY_CORES


BUSY_WINDOW = 0.05  # the shortest span busy_since judges: /proc/stat counts 10-ms ticks


def busy_since(mark: LoadMark | None) -> bool:
    """Whether other processes kept at least half a core busy since ``mark``, while this
    process ran (its trials); it waits only where that span was under :data:`BUSY_WINDOW`."""
    if mark is not None and time.perf_counter() - mark[2] < BUSY_WINDOW:
        time.sleep(BUSY_WINDOW - (time.perf_counter() - mark[2]))
    return others_since(mark) >= BUSY_CORES
