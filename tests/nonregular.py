"""Things that are not regular files, for the tests of the readers: a FIFO, a link to
/dev/zero, and a call that must return (not hang) within a time."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
needs_dev_zero = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def link_to_dev_zero(path: Path) -> Path:
    path.symlink_to("/dev/zero")
    return path


def returns_within(seconds: float, call: Callable[[], Any], fifo: Path | None = None) -> Any:
    """What ``call()`` returns (or the exception it raises, as a value), failing the test if
    it has not returned after ``seconds``. A reader blocked on ``fifo`` is then released by
    opening the FIFO's other end, so the test ends either way."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:  # a writer that closes at once: the blocked reader sees EOF
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"still running after {seconds} s (it waits on what is not a file)")
    return out["value"]
