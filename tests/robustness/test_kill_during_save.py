"""Nothing lost: a process killed (SIGKILL) at random moments while it saves checkpoints over and
over always leaves a file that loads intact (one whole version, never a mix) and resumes training.

The saving process is a ``fork`` of the test, so each kill costs milliseconds, not an interpreter
start. ``FASTBP_FUZZ=long`` kills it 200 times instead of 20.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp.model.persist import load_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

SIZES = [784, 64, 10]  # ~200 kB a file: a save takes a few milliseconds
KILLS = 200 if os.environ.get("FASTBP_FUZZ", "").lower() == "long" else 20


def version(net: fastbp.Network, base: list[np.ndarray], i: int) -> None:
    """Make ``net`` version ``i``: every weight is its base value plus ``i``."""
    net.weights = [w + i for w in base]


def save_forever(net: fastbp.Network, base: list[np.ndarray], path: Path, first: int,
                 report: int) -> None:
    """The child: save versions first, first + 1, ... to ``path``; one byte to ``report`` each."""
    try:
        i = first
        while True:
            version(net, base, i)
            net.save(path, extra={"version": i})
            os.write(report, b".")
            i += 1
    finally:
        os._exit(0)


def kill_during_saves(net, base, path: Path, first: int, delay: float,
                      after_first_save: bool = True) -> int:
    """Fork a saver, SIGKILL it ``delay`` seconds after its first save (or after the fork);
    return how many saves it completed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_end)
        save_forever(net, base, path, first, write_end)
    os.close(write_end)
    done = 0
    if after_first_save:  # a loaded machine may start the child late: wait for it
        ready, _, _ = select.select([read_end], [], [], 60)
        done = len(os.read(read_end, 1)) if ready else 0
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.set_blocking(read_end, False)
    try:
        while chunk := os.read(read_end, 4096):
            done += len(chunk)
    except BlockingIOError:
        pass
    os.close(read_end)
    return done


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.random((SIZES[0], 64)).astype("float32"), rng.integers(0, 10, 64)


def test_sigkill_during_save_never_loses_the_checkpoint(tmp_path: Path, data) -> None:
    rng = random.Random(2024)
    net = fastbp.Network(SIZES, seed=9)
    net.train(*data, epochs=1, batch_size=16, eta=0.1)
    base = list(net.weights)
    path = tmp_path / "model.npz"
    version(net, base, 0)
    net.save(path, extra={"version": 0})
    last, total_saves = 0, 0
    for _ in range(KILLS):
        done = kill_during_saves(net, base, path, last + 1, rng.uniform(0.002, 0.06))
        total_saves += done
        ckpt = load_checkpoint(path)  # never ModelFormatError
        v = ckpt.extra["version"]
        # The file is the last completed save, or the one in flight when the kill came.
        assert last + done <= v <= last + done + 1
        for w, b in zip(ckpt.network.weights, base):
            np.testing.assert_array_equal(w, b + v)  # one whole version, never a mix
        last = v
    assert total_saves >= KILLS  # every kill came after a save, among the next ones
    resumed = fastbp.load(path)
    history = resumed.train(*data, epochs=1, batch_size=16, eta=0.1)
    assert len(resumed.history) == 2 and history[0].epoch == 1
    assert all(np.isfinite(w).all() for w in resumed.weights)
    strays = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
    assert all(s.startswith(".model.npz.") and s.endswith(".tmp") for s in strays), strays


def test_sigkill_during_the_first_save_leaves_no_file_or_a_whole_one(tmp_path: Path) -> None:
    rng = random.Random(7)
    net = fastbp.Network(SIZES, seed=9)
    base = list(net.weights)
    for k in range(max(5, KILLS // 4)):
        path = tmp_path / f"first-{k}.npz"
        kill_during_saves(net, base, path, 0, rng.uniform(0.0, 0.004), after_first_save=False)
        if path.exists():
            ckpt = load_checkpoint(path)
            v = ckpt.extra["version"]
            for w, b in zip(ckpt.network.weights, base):
                np.testing.assert_array_equal(w, b + v)
