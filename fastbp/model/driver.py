"""The one epoch driver: every way of training (``Network.train``, the book's ``SGD``, MPI data
parallelism) runs its epochs through :func:`run_epochs`.

Per epoch it draws the sample order from the network's generator, runs one epoch of SGD (the
backend's own epoch or the generic loop, :func:`fastbp.core.epoch.run_epoch`; a caller may supply
another, e.g. a shard of every mini-batch plus a gradient reduction), checks for divergence
(:mod:`fastbp.core.guard`), scores the test set and appends an :class:`EpochRecord`.
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
from ..core.plan import EpochPlan
from ..core.records import EpochRecord, History, format_record
from ..errors import ConfigError
from .progress import sgd_epoch_in_chunks

if TYPE_CHECKING:
    from .trainee import Trainee

EpochFn = Callable[[EpochPlan], float]
"""Runs one epoch of SGD over ``plan.cursor.order`` and returns the summed cost as a host float."""


def default_epoch(net: Trainee) -> EpochFn:
    """The network's backend's own epoch when it has one, else the generic loop."""
    be = net.backend
    return lambda plan: float(run_epoch(be, plan))  # reading the cost waits for the device


def run_epochs(net: Trainee, plan: EpochPlan, evaluator: Evaluator | None, *, epochs: int,
               shuffle: bool, eta: float, callback: Callable[..., Any] | None = None,
               verbose: bool = False, progress: Callable[[int, float, int], None] | None = None,
               on_diverge: str = "raise", epoch_fn: EpochFn | None = None,
               history: History | None = None, schedule: Any = None) -> History:
    """Run ``epochs`` epochs of ``plan`` on ``net``; returns this call's records (``history``,
    a new :class:`History` by default) and extends ``net.history`` with them.

    ``callback(record, net)`` runs after every epoch and stops training when it returns
    ``False``; ``progress(done, cost_sum, n)`` runs after each of a few slices of every epoch.
    ``schedule`` (e.g. :class:`~fastbp.model.monitoring.LearningRateSchedule`) sets ``η`` (and
    the L2 factor with it) before the first epoch and after each: ``schedule.begin(eta)``
    gives the rate to start with, ``schedule(record, net)`` runs after the callback, stops
    training when it returns ``False`` and leaves the next epoch's rate in ``schedule.eta``.

    An epoch that does not finish (Ctrl-C, divergence, any exception) gives the network back
    the parameters and random state of the last finished one, so ``net.history``, the parameters
    and the generator always agree and a save then resumes bit for bit. One network trains in
    one thread at a time: a second ``train`` on it meanwhile is a ``ConfigError``.
    """
    be = net.backend
    epoch_fn = epoch_fn or default_epoch(net)
    history = History() if history is None else history
    n = plan.data.n
    if schedule is not None:
        plan.set_eta(schedule.begin(eta))
    params, s = plan.params, plan.settings
    with training(net):
        guard = DivergenceGuard(be, params.weights, params.biases, on_diverge=on_diverge,
                                first_epoch=len(net.history), state=params.velocities or (),
                                terms={"eta": s.eta, "lmbda": s.lmbda, "l1": s.l1, "mu": s.mu})
        for epoch in range(len(net.history), len(net.history) + epochs):
            rng_state, finished = net.rng.bit_generator.state, False
            try:
                order = net.rng.permutation(n) if shuffle else np.arange(n)
                # the epoch's dropout masks (fastbp.core.dropout)
                seed = int(net.rng.integers(1 << 32)) if plan.settings.dropout else 0
                plan.start(be.index_array(order), seed)
                t0 = time.perf_counter()
                if progress is None:
                    cost = epoch_fn(plan) / n
                else:
                    cost = sgd_epoch_in_chunks(be, plan, order, progress, epoch_fn) / n
                t1 = time.perf_counter()
                guard.check(epoch, cost, keep=False)
                correct = evaluator.correct(params.weights, params.biases) if evaluator else None
                record = EpochRecord(
                    epoch=epoch, cost=cost,
                    accuracy=None if correct is None else correct / evaluator.n,
                    correct=correct, seconds=time.perf_counter() - t0,
                    samples_per_s=n / max(t1 - t0, 1e-9),
                )
                history.append(record)
                net.history.append(record)
                finished = True
                guard.keep()
            except BaseException:
                if not finished:  # back to the last epoch that finished
                    guard.restore()
                    net.rng.bit_generator.state = rng_state
                raise
            if verbose:
                print(format_record(record, evaluator.n if evaluator else None), flush=True)
            if callback is not None and callback(record, net) is False:
                break
            if schedule is not None:
                go = schedule(record, net)
                if schedule.eta != plan.settings.eta:
                    plan.set_eta(schedule.eta)
                    guard.eta = schedule.eta
                if go is False:
                    break
    unfinished = getattr(schedule, "unfinished", None)  # a schedule that can say so
    note = unfinished() if unfinished is not None and getattr(schedule, "verbose", False) else None
    if note:
        schedule.print_fn(note)
    return history


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
