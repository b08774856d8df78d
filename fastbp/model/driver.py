"""The one epoch driver: every way of training (``Network.train``, the book's ``SGD``, MPI data
parallelism) runs its epochs through :func:`run_epochs`.

Training goes from :class:`~fastbp.model.state.TrainState` to state (:func:`train_epochs`).
Per epoch it draws the sample order from the state's generator, runs one epoch of SGD (the
backend's own epoch or the generic loop, :func:`fastbp.core.epoch.run_epoch`; a caller may supply
another, e.g. a shard of every mini-batch plus a gradient reduction), checks for divergence
(:mod:`fastbp.core.guard`), scores the test set and makes the next state with the epoch's
:class:`EpochRecord`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..core.epoch import run_epoch
from ..core.evaluator import Evaluator
from ..core.guard import DivergenceGuard
from ..core.ops import Ops
from ..core.plan import EpochPlan
from ..core.records import EpochRecord, History, format_record
from ..errors import ConfigError
from .progress import Progress, sgd_epoch_in_chunks
from .state import TrainState

if TYPE_CHECKING:
    from .trainee import Trainee

EpochFn = Callable[[EpochPlan], float]
"""Runs one epoch of SGD over ``plan.cursor.order`` and returns the summed cost as a host
float."""


def default_epoch(backend: Ops) -> EpochFn:
    """The backend's own epoch when it has one, else the generic loop."""
    return lambda plan: float(run_epoch(backend, plan))  # reading the cost waits for the device


def run_epochs(net: Trainee, plan: EpochPlan, evaluator: Evaluator | None, *, epochs: int,
               shuffle: bool, eta: float, callback: Callable[..., Any] | None = None,
               verbose: bool = False, progress: Callable[[int, float, int], None] | None = None,
               on_diverge: str = "raise", epoch_fn: EpochFn | None = None,
               history: History | None = None, schedule: Any = None) -> History:
    """Run ``epochs`` epochs of ``plan`` on ``net`` (:func:`train_epochs` from the network's
    :class:`~fastbp.model.state.TrainState`: ``plan.params``, ``net.rng``, ``net.history``);
    returns this call's records (``history``, a new :class:`History` by default).

    After each epoch that finishes the network takes its state (``net.rng``, ``net.history``),
    before ``callback(record, net)`` and ``schedule(record, net)`` run; an epoch that does not
    finish leaves the network the state of the last one that did, so its history, parameters
    and generator always agree and a save then resumes bit for bit. One network trains in one
    thread at a time: a second ``train`` on it meanwhile is a ``ConfigError``.
    """
    def keep(state: TrainState) -> None:
        net.rng, net.history = state.rng, state.history

    history = History() if history is None else history
    with training(net):
        train_epochs(net.backend, TrainState(plan.params, net.rng, net.history), plan,
                     evaluator, epochs=epochs, shuffle=shuffle, eta=eta, callback=callback,
                     verbose=verbose, progress=progress, on_diverge=on_diverge,
                     epoch_fn=epoch_fn, records=history, schedule=schedule, owner=net,
                     keep=keep)
    return history


def train_epochs(backend: Ops, state: TrainState, plan: EpochPlan,
                 evaluator: Evaluator | None, *, epochs: int, shuffle: bool, eta: float,
                 callback: Callable[..., Any] | None = None, verbose: bool = False,
                 progress: Callable[[int, float, int], None] | None = None,
                 on_diverge: str = "raise", epoch_fn: EpochFn | None = None,
                 records: History | None = None, schedule: Any = None, owner: Any = None,
                 keep: Callable[[TrainState], None] | None = None) -> TrainState:
    """``epochs`` epochs of ``plan`` from ``state`` (whose ``params`` are the plan's); returns
    the state after the last one that finished, numbered from ``len(state.history)``.

    Per epoch: the order (and the dropout seed) drawn from the state's generator, one epoch of
    ``epoch_fn`` (default :func:`default_epoch`), the divergence check, the test set scored, an
    :class:`EpochRecord`; then the next state, handed to ``keep`` and appended to ``records``.
    ``callback(record, owner)`` then runs and stops training when it returns ``False``;
    ``progress(done, cost_sum, n)`` runs after each of a few slices of every epoch.
    ``schedule`` (e.g. :class:`~fastbp.model.monitoring.LearningRateSchedule`) sets ``η`` (the
    plan's settings, and the L2 factor with them) before the first epoch and after each:
    ``schedule.begin(eta)`` gives the rate to start with, ``schedule(record, owner)`` runs after
    the callback, stops training when it returns ``False`` and leaves the next rate in
    ``schedule.eta``. An epoch that does not finish (Ctrl-C, divergence, any exception) makes no
    new state: the parameters are copied back (:mod:`fastbp.core.guard`), and the state it
    started from, the last one ``keep`` got, is the one that holds.
    """
    epoch_fn = epoch_fn or default_epoch(backend)
    if schedule is not None:
        plan.set_eta(schedule.begin(eta))
    params, s = state.params, plan.settings
    guard = DivergenceGuard(backend, params.weights, params.biases, on_diverge=on_diverge,
                            first_epoch=len(state.history), state=params.velocities or (),
                            terms={"eta": s.eta, "lmbda": s.lmbda, "l1": s.l1, "mu": s.mu})
    first = len(state.history)
    for epoch in range(first, first + epochs):
        state = _epoch(backend, state, plan, evaluator, guard, epoch, shuffle, progress,
                       epoch_fn)
        record = state.history[-1]
        if records is not None:
            records.append(record)
        if keep is not None:
            keep(state)
        if verbose:
            print(format_record(record, evaluator.n if evaluator else None), flush=True)
        if callback is not None and callback(record, owner) is False:
            break
        if schedule is not None:
            go = schedule(record, owner)
            if schedule.eta != plan.settings.eta:
                plan.set_eta(schedule.eta)
                guard.eta = schedule.eta
            if go is False:
                break
    unfinished = getattr(schedule, "unfinished", None)  # a schedule that can say so
    note = unfinished() if unfinished is not None and getattr(schedule, "verbose", False) else None
    if note:
        schedule.print_fn(note)
    return state


def _epoch(backend: Ops, state: TrainState, plan: EpochPlan, evaluator: Evaluator | None,
           guard: DivergenceGuard, epoch: int, shuffle: bool, progress: Progress | None,
           epoch_fn: EpochFn) -> TrainState:
    """One epoch from ``state``: the next state, or an exception with the parameters of
    ``state`` given back."""
    rng = state.generator()
    n = plan.data.n
    try:
        order = rng.permutation(n) if shuffle else np.arange(n)
        # the epoch's dropout masks (fastbp.core.dropout)
        seed = int(rng.integers(1 << 32)) if plan.settings.dropout else 0
        plan.start(backend.index_array(order), seed, epoch=epoch)
        t0 = time.perf_counter()
        if progress is None:
            cost = epoch_fn(plan) / n
        else:
            cost = sgd_epoch_in_chunks(backend, plan, order, progress, epoch_fn) / n
        t1 = time.perf_counter()
        guard.check(epoch, cost, keep=False)
        params = state.params
        correct = None
        if evaluator is not None:
            with backend.between_epochs(plan):
                correct = evaluator.correct(params.weights, params.biases)
        record = EpochRecord(
            epoch=epoch, cost=cost,
            accuracy=None if correct is None else correct / evaluator.n,
            correct=correct, seconds=time.perf_counter() - t0,
            samples_per_s=n / max(t1 - t0, 1e-9),
        )
    except BaseException:
        guard.restore()  # the parameters of the last epoch that finished
        raise
    guard.keep()
    return state.after(rng, record)


_training: dict[int, int] = {}  # id(network) -> the thread training it
_training_lock = threading.Lock()


@contextlib.contextmanager
def training(net: Trainee) -> Iterator[None]:
    """Mark ``net`` as training in this thread for the block; ``ConfigError`` if it already is."""
    me = threading.get_ident()
    with _training_lock:
        owner = _training.get(id(net))
        if owner is not None:
            where = "this thread (train called from its own callback)" if owner == me else \
                "another thread"
            raise ConfigError(
                f"this network is already training in {where}; one network trains in one "
                "thread at a time: wait for it, or train a copy (net.to(net.device))")
        _training[id(net)] = me
    try:
        yield
    finally:
        with _training_lock:
            del _training[id(net)]
