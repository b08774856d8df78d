"""How the ``cuda`` device runs an epoch: the planner's choice between a captured CUDA graph of
raw kernels (:mod:`fastbp_cupy.graph`), the eager step (:mod:`fastbp_cupy.eager`) and the core's
generic loop, and the programs each path keeps with the training plan (:class:`PlanPrograms`)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from fastbp.core.memory import translate_oom
from fastbp.core.neurons import kinds_of
from fastbp.core.ops import Scalar
from fastbp.core.plan import EpochPlan
from fastbp.devices import planner

from . import kernels as K
from . import planning
from .eager import EagerProgram
from .graph import (
    Accumulator,
    CapturedEpoch,
    NotCapturable,
    StepProgram,
    check_arrays,
    cost_kind,
)
from .probe import GRAPHS_ENV, graphs_from_env

log = logging.getLogger("fastbp")

if TYPE_CHECKING:  # a mixin of CuPyBackend: the type checker sees the Backend it extends
    from fastbp.devices import Backend as _Base
else:
    _Base = object


class EpochPaths(_Base):
    """The part of :class:`~fastbp_cupy.backend.CuPyBackend` that runs whole epochs: graph,
    eager or generic, chosen per configuration by the planner (:mod:`fastbp_cupy.planning`)."""

    # The planner's default between graph and eager (FASTBP_PLAN=off, and what a measured
    # candidate must beat), estimated from the kernels' design: small batches of small networks,
    # where launches cost more than the work; cuBLAS wins beyond.
    graph_max_batch = 128        # batch sizes up to this
    graph_max_weights = 262_144  # networks with at most this many weights Σ n_l n_{l-1}
    graph_steps = 50             # steps per captured graph
    # Fill every work buffer of the graph and eager programs with NaN when it is allocated, so a
    # kernel that reads what no kernel wrote shows up at once (the GPU checks set it).
    poison_buffers = False
    # set by the backend
    cp: Any
    dtype: str
    index: int
    _device: Any
    _graphs_flag: bool | None
    graph_error: str | None
    graph_skipped: str | None
    raw_error: str | None
    last_epoch_path: str | None

    @property
    def graphs(self) -> bool:
        """Whether steps may be captured as CUDA graphs (flag, else the environment)."""
        if self._graphs_flag is not None:
            return bool(self._graphs_flag)
        return graphs_from_env()

    def graphs_off_reason(self) -> str | None:
        """Why every epoch runs eager without planning (``graphs=False``,
        ``FASTBP_CUDA_GRAPHS=0``, a capture that failed here), or ``None``."""
        if self._graphs_flag is not None:
            return None if self._graphs_flag else "graphs=False"
        if not graphs_from_env():
            return f"{GRAPHS_ENV}={os.environ.get(GRAPHS_ENV, '').strip()}"
        if self.graph_error is not None:
            return f"fallback: capture failed here ({self.graph_error})"
        return None

    def graph_estimate(self, plan: Any) -> bool:
        """The estimate the planner starts from: whether ``plan``'s step is small enough for
        launches to dominate (batches ≤ ``graph_max_batch``, ≤ ``graph_max_weights`` weights)."""
        weights = sum(int(w.shape[0]) * int(w.shape[1]) for w in plan.params.weights)
        return (int(plan.settings.batch_size) <= self.graph_max_batch
                and weights <= self.graph_max_weights)

    def plan_for(self, plan: EpochPlan) -> planner.Choice:
        """How epochs of ``plan`` will run here (:func:`fastbp_cupy.planning.choose`): ``graph``
        or ``eager``, cached, forced, the default, or the fastest in a trial now; ``generic``
        where the raw kernels do not take the plan (a custom cost, float16)."""
        with self._device:
            if not (self._raw_kernels_apply(plan) and self._raw_kernels_load(plan)):
                return planner.Choice("generic", "the raw kernels do not take this plan")
            return planning.choose(self, plan, self._trial_epoch)

    # -- a whole epoch --------------------------------------------------------------------
    def sgd_epoch(self, plan: EpochPlan) -> Scalar | None:
        """One epoch over ``plan.cursor.order``: the summed cost as a device scalar (nothing
        waits), or ``None`` for the generic loop (a custom cost, float16).

        The plan (:mod:`fastbp_cupy.planning`) says whether the full mini-batches replay a
        captured graph; the rest (a last partial batch, an ``eager`` plan) run the eager step.
        A plan whose graph cannot be captured falls back to eager, said in one warning.
        """
        with self._device:
            if not (self._raw_kernels_apply(plan) and self._raw_kernels_load(plan)):
                self.last_epoch_path = "generic"
                return None
            choice = planning.choose(self, plan, self._trial_epoch)
            total = self._epoch(plan, choice.name)
            if choice.name == "graph" and self.graph_error is not None:
                planning.fall_back(choice)
            return total

    def _trial_epoch(self, plan: Any, candidate: str) -> Any:
        """One epoch of a planner's trial plan as ``candidate``: a capture that fails raises
        (the planner leaves the candidate out) instead of turning graphs off."""
        with self._device:
            total = self._epoch(plan, candidate, trial=True)
        if candidate == "graph" and self.last_epoch_path != "graph":
            raise NotCapturable("the step was not captured")
        return total

    def _epoch(self, plan: Any, candidate: str, *, trial: bool = False) -> Any:
        """One epoch of ``plan`` as ``candidate`` (``graph`` or ``eager``); the summed cost as
        a device scalar. In a ``trial`` a failed capture raises."""
        cursor = plan.cursor
        n, m = int(cursor.order.shape[0]), int(plan.settings.batch_size)
        full = n // m
        held = plan_programs(plan)
        programs, acc = held.programs, held.acc
        if acc is None:
            with translate_oom(self, plan.layers.sizes, m):
                acc = held.acc = Accumulator(self.cp)
        captured = None
        if candidate == "graph" and self.graph_error is None and full > 0:
            captured = self._captured(plan, programs, acc, m, full, strict=trial)
        first = full * m if captured is not None else 0
        # every program the epoch needs exists before its first step runs
        eager = [(self._eager(plan, programs, acc, size), start, stop)
                 for size, start, stop in _batches(first, n, m)]
        acc.cost.fill(0)
        if captured is not None:
            captured.run(cursor.order, full, cursor.seed, cursor.first_step)
        for program, start, stop in eager:
            program.run(plan, start, stop)
        self.last_epoch_path = "graph" if captured is not None else "eager"
        return acc.cost[0].copy()

    def _raw_kernels_apply(self, plan: Any) -> bool:
        """Whether the raw kernels take this plan (a built-in cost; float32/float64; velocities
        like the parameters; dropout on σ, tanh or relu hidden layers)."""
        params, data = plan.params, plan.data
        try:
            check_arrays(params.weights, params.biases, data.xs, data.ys)
            if params.velocities is not None:
                check_arrays(params.velocities, [], data.xs, data.ys)
            cost_kind(plan.layers.cost)
        except NotCapturable:
            return False
        if plan.settings.dropout:
            hidden = kinds_of(plan.layers.kinds, len(params.weights))[:-1]
            return all(kind in K.PRIME_KIND for kind in hidden)
        return True

    def _raw_kernels_load(self, plan: Any) -> bool:
        """Whether the raw kernels compile and load here; if not, said in one warning, and
        this backend trains with the generic loop from then on."""
        if self.raw_error is None:
            real = "float" if str(plan.data.xs.dtype) == "float32" else "double"
            try:
                K.raw_functions(self.cp, real, self.index)
            except Exception as exc:  # noqa: BLE001 - NVRTC or loader errors alike
                self.raw_error = f"{type(exc).__name__}: {exc}"
                log.warning("fastbp: the raw CUDA kernels do not build on %s (%s); training "
                            "with the generic loop", self.device, self.raw_error)
        return self.raw_error is None

    def _captured(self, plan: Any, programs: dict[tuple, Any], acc: Accumulator, m: int,
                  steps: int, *, strict: bool = False) -> CapturedEpoch | None:
        """The plan's captured step with graphs for ``steps`` steps, or ``None`` to go eager.

        A capture that runs out of GPU memory skips graphs for this epoch only (said once, the
        next epoch tries again); any other failure turns graphs off on this backend, said in
        one warning. ``strict`` (a planner's trial): any failure raises.
        """
        s, params, data, layers = plan.settings, plan.params, plan.data, plan.layers
        alpha, beta = s.eta / m, s.decay
        key = ("graph", m, alpha, beta, layers.cost, layers.kinds, _identity(plan),
               _techniques(plan))
        captured = programs.get(key)
        try:
            if captured is None:
                velocities = params.velocities if s.velocity else None
                program = StepProgram(self.cp, params.weights, params.biases, data.xs, data.ys,
                                      layers.cost, m, alpha, beta, acc=acc,
                                      poison_buffers=self.poison_buffers, kinds=layers.kinds,
                                      velocities=velocities, mu=s.mu, l2=s.l2_step,
                                      l1=s.l1_step, dropout=s.dropout)
                captured = CapturedEpoch(self.cp, program, self.graph_steps, self.index)
            captured.prepare(steps)
        except NotCapturable:
            if strict:
                raise
            return None
        except Exception as exc:  # noqa: BLE001 - any capture failure: train eagerly
            programs.pop(key, None)
            reason = f"{type(exc).__name__}: {exc}"
            if out_of_memory(exc):
                self._release_pool()
            if strict:
                raise
            if out_of_memory(exc):
                if self.graph_skipped is None:
                    log.warning("fastbp: not enough GPU memory on %s to capture the step (%s); "
                                "this epoch trains without graphs, the next one tries again",
                                self.device, reason)
                self.graph_skipped = reason
                return None
            self.graph_error = reason
            log.warning("fastbp: CUDA graph capture failed on %s (%s); the plan falls back to "
                        "eager: training without graphs", self.device, self.graph_error)
            return None
        _remember(programs, key, captured)
        self.graph_skipped = None
        return captured

    def _eager(self, plan: Any, programs: dict[tuple, Any], acc: Accumulator, m: int
               ) -> EagerProgram:
        """The plan's eager program for batches of ``m`` (built on first use)."""
        key = ("eager", m, plan.layers.cost, plan.layers.kinds, _identity(plan),
               plan.settings.dropout)
        program = programs.get(key)
        if program is None:
            # MemoryError -> DeviceError with the numbers
            with translate_oom(self, plan.layers.sizes, m):
                program = EagerProgram(self, plan, m, acc, poison_buffers=self.poison_buffers)
        _remember(programs, key, program)
        return program

    def _release_pool(self) -> None:
        """Give the blocks CuPy's pool holds unused back to the driver."""
        with contextlib.suppress(Exception):
            self.cp.get_default_memory_pool().free_all_blocks()


PROGRAMS_PER_PLAN = 6  # besides the accumulator: graph + eager (full and last batch), with room


class PlanPrograms:
    """The programs (buffers, captured graphs) this device built for one plan, in the plan's
    own caches (``plan.bound``): the epoch's cost ``acc`` and the graph and eager programs by
    key, the newest last.

    They hold raw pointers to the plan's parameters and data set, so they live as long as the
    plan, and no longer: when ``Network.train`` returns, its plan is dropped and the graphs,
    their buffers and the uploaded data set are freed with it; no cache on the backend keeps a
    stale data set alive or recaptures for an array's ``id``.
    """

    def __init__(self) -> None:
        self.acc: Accumulator | None = None
        self.programs: dict[tuple, Any] = {}


def plan_programs(plan: Any) -> PlanPrograms:
    """The programs this device built for ``plan`` (:class:`PlanPrograms`)."""
    return plan.bound.of(PlanPrograms)


def _identity(plan: Any) -> tuple[int, ...]:
    """The plan's arrays by identity (a program holds them, so no id is reused meanwhile)."""
    return tuple(id(a) for a in (*plan.params.arrays(), plan.data.xs, plan.data.ys))


def _techniques(plan: Any) -> tuple[Any, ...]:
    """What a captured step freezes of chapter 3's techniques: ``μ``, ``ηλ/n``, ``ηλ₁/n`` and
    the dropout ``p`` (the velocities are in :func:`_identity`; the seed is device memory)."""
    s = plan.settings
    if s.plain:
        return ()
    return (s.velocity, s.mu, s.l2_step, s.l1_step, s.dropout)


def _remember(programs: dict[tuple, Any], key: tuple, program: Any) -> None:
    programs.pop(key, None)
    programs[key] = program  # the newest last
    for old in list(programs)[:-PROGRAMS_PER_PLAN]:
        del programs[old]


def _batches(first: int, n: int, m: int) -> list[tuple[int, int, int]]:
    """``(batch size, start, stop)`` for the full batches of ``order[first:n]`` and the last,
    shorter one."""
    stop = first + (n - first) // m * m
    runs = [(m, first, stop)] if stop > first else []
    if stop < n:
        runs.append((n - stop, stop, n))
    return runs


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the GPU ran out of memory (CuPy's ``OutOfMemoryError`` is a
    ``MemoryError``; CUDA's own says ``cudaErrorMemoryAllocation``)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "cudaErrorMemoryAllocation" in text or "out of memory" in text.lower()
