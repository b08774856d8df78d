"""Training progress: a bar per epoch (tqdm, the ``progress`` extra) with samples/s and the
running cost, or one plain line per epoch when tqdm is missing, the output is not a terminal, or
the terminal is too narrow for a bar (some report 0 columns).

The bar moves without touching the hot loop: with a ``progress`` hook, :meth:`Network.train`
runs each epoch as a few calls of the epoch function over consecutive slices of the
epoch's sample order (:func:`sgd_epoch_in_chunks`). Each slice is a whole number of mini-batches,
so the steps, and the parameters they produce, are exactly those of one call.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, TextIO

import numpy as np

from ..core.ops import Ops
from ..core.plan import EpochPlan
from ..core.records import EpochRecord, format_record

if TYPE_CHECKING:
    from .trainee import Trainee

Progress = Callable[[int, float, int], None]
"""``progress(done, cost_sum, n)``: ``done`` of the epoch's ``n`` samples are through SGD and
their summed cost is ``cost_sum``; ``done == 0`` starts an epoch and ``done == n`` ends it."""


def sgd_epoch_in_chunks(backend: Ops, plan: EpochPlan, order: np.ndarray,
                        progress: Progress, epoch_fn: Callable[[EpochPlan], float],
                        updates: int = 40) -> float:
    """One epoch of SGD over ``order`` in about ``updates`` calls of ``epoch_fn`` (one epoch
    over ``plan.cursor.order``, the summed cost as a host float), calling ``progress`` after each;
    returns the summed cost. Every slice but the last holds a whole number of mini-batches, so
    the mini-batches are those of a single call; a device that plans its epochs
    (``plan_for``) plans the whole epoch first, so the slices run as one call would."""
    n = len(order)
    m, seed, epoch = plan.settings.batch_size, plan.cursor.seed, plan.cursor.epoch
    steps = -(-n // m)
    step = max(1, -(-steps // max(1, updates))) * m
    total = 0.0
    plan_for = getattr(backend, "plan_for", None)
    if plan_for is not None:  # the device plans the whole epoch, not the first slice
        plan.start(backend.index_array(order), seed, epoch=epoch)
        own = plan.device_form()  # a layer stack a device's own epoch does not take: None
        if own is not None:
            plan_for(own)
    progress(0, 0.0, n)
    for start in range(0, n, step):
        # the slice's masks are the epoch's: its first step is numbered within the epoch
        plan.start(backend.index_array(order[start:start + step]), seed, start // m, epoch)
        total += epoch_fn(plan)
        progress(min(start + step, n), total, n)
    plan.start(backend.index_array(order), seed, epoch=epoch)
    return total


MIN_BAR_COLUMNS = 40
"""Narrower terminals (some report 0 columns, or 0 rows) get plain lines: a bar there shows
nothing."""


def terminal_size(stream: TextIO) -> os.terminal_size | None:
    """The size of the terminal ``stream`` writes to, or ``None`` when it cannot tell."""
    try:
        return os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def terminal_columns(stream: TextIO) -> int | None:
    """The width of the terminal ``stream`` writes to, or ``None`` when it cannot tell."""
    size = terminal_size(stream)
    return None if size is None else size.columns


def too_narrow(stream: TextIO) -> bool:
    """Whether ``stream``'s terminal reports fewer than :data:`MIN_BAR_COLUMNS` columns, or no
    rows at all (some report 0 by 0): a bar there shows nothing."""
    size = terminal_size(stream)
    return size is not None and (size.columns < MIN_BAR_COLUMNS or size.lines < 1)


def tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class PlainLines:
    """One line per epoch, as ``train(verbose=True)`` prints, to ``stream``."""

    def __init__(self, n_test: int | None = None, stream: TextIO | None = None) -> None:
        self.n_test, self.stream = n_test, stream

    hook: Progress | None = None

    def __call__(self, record: EpochRecord, net: Trainee) -> None:
        print(format_record(record, self.n_test), file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class EpochBar:
    """A tqdm bar per epoch: samples done, samples/s, the running mean cost per sample; when
    the epoch ends, its test accuracy. Pass :attr:`hook` as ``train``'s ``progress`` and the
    object itself as (part of) its ``callback``."""

    def __init__(self, epochs: int | None = None, n_test: int | None = None,
                 stream: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.epochs, self.n_test, self.stream = epochs, n_test, stream
        self.bar: Any = None
        self.epoch = 0
        self._done = 0
        self._last = 0.0

    def hook(self, done: int, cost_sum: float, n: int) -> None:
        if done == 0:
            self._close()
            self.bar = self._tqdm(total=n, desc=f"Epoch {self.epoch}", unit=" samples",
                                  unit_scale=True, file=self.stream or sys.stdout,
                                  dynamic_ncols=True, leave=True)
            self._done, self._last = 0, 0.0
            return
        now = time.perf_counter()
        self.bar.update(done - self._done)
        self._done = done
        if done == n or now - self._last > 0.2:
            self.bar.set_postfix_str(f"cost {cost_sum / done:.4f}", refresh=False)
            self._last = now

    def __call__(self, record: EpochRecord, net: Trainee) -> None:
        if self.bar is not None:
            text = f"cost {record.cost:.4f}"
            if record.accuracy is not None:
                text += f", test {100 * record.accuracy:.2f} %"
            self.bar.set_postfix_str(text, refresh=True)
            self._close()
        stream = self.stream or sys.stdout
        if too_narrow(stream):  # the terminal shrank: the bar showed nothing
            print(format_record(record, self.n_test), file=stream, flush=True)
        self.epoch = record.epoch + 1

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close()


def reporter(*, quiet: bool = False, stream: TextIO | None = None, epochs: int | None = None,
             first_epoch: int = 0, n_test: int | None = None,
             bar: bool = True) -> EpochBar | PlainLines | None:
    """What shows training progress: nothing with ``quiet``; a tqdm bar per epoch on a terminal
    at least :data:`MIN_BAR_COLUMNS` wide with tqdm installed (unless ``bar`` is false);
    otherwise one plain line per epoch."""
    if quiet:
        return None
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    if (bar and isatty is not None and isatty() and tqdm_available()
            and not too_narrow(stream)):
        bar = EpochBar(epochs=epochs, n_test=n_test, stream=stream)
        bar.epoch = first_epoch
        return bar
    return PlainLines(n_test=n_test, stream=stream)
