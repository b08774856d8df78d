"""What ``fastbp train`` does when a run stops early: Ctrl-C (SIGINT), SIGTERM, or a divergence.

The epoch loop gives the network back the parameters and random state of the last finished epoch
(:func:`fastbp.model.driver.run_epochs`); :meth:`fastbp.cli.session.Session.keeping` then saves
that epoch where ``--save`` (or ``--resume``) asked, or in a rescue file, says where, and the
command exits as before: 130 after Ctrl-C, 143 after SIGTERM, 2 after a divergence.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

CLI_NAMES = {"eta": "--eta", "lmbda": "--lmbda", "l1": "--l1", "mu": "--momentum",
             "dtype": "--dtype float32"}
"""The fixes a divergence message suggests on the command line: its options (``on_diverge``
is the API's alone)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that training stops the same way."""

    exit_status = 143  # 128 + SIGTERM, as a shell reports a process it terminated

    def __str__(self) -> str:
        return "terminated (SIGTERM)"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread only, where
    Python runs signal handlers); the handler before it comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        before = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here, or not settable
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def stop_line(epochs: int, where: Any, failure: BaseException | None, asked: Any) -> str:
    """What a stopped run kept, in words: which epoch and where (``where``; ``None`` when no
    save path was given, or nothing could be written)."""
    last = f"epoch {epochs - 1}, the last finished one,"
    if where is None and failure is None:
        return f"{last} is not kept (no --save PATH was given)"
    if where is None:
        return f"could not save {last} to {asked} ({failure}), nor in a rescue folder"
    if failure is not None:
        return (f"could not save {asked} ({failure}); {last} is kept at {where}: move it where "
                "it belongs")
    return f"saved {last} in {where} ({epochs} epochs)"


def cause(exc: BaseException) -> str:
    """``interrupted``, ``terminated (SIGTERM)`` or ``stopped by an error``."""
    if isinstance(exc, KeyboardInterrupt):
        return str(exc) or "interrupted"
    return "stopped by an error"
