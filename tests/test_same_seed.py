"""Same seed, same device, same machine: the same numbers, whatever the terminal (an epoch run
in slices for the progress bar), the machine's load, or the state of the plan cache. The
planner's candidates may round differently (another GEMM library, a step split in halves), so a
configuration's plan is chosen once per machine and recorded (:mod:`fastbp.devices.planner`)."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest

import fastbp
from fastbp.devices import planner

jit = pytest.importorskip("fastbp_numba.planning")

SIZES = [40, 16, 10]
KEY = "cpu-jit [40,16,10] m=10 float32"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """Planning on (as a user has it), a fresh cache, a quiet machine unless a test says not."""
    monkeypatch.setenv("FASTBP_PLAN", "auto")
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path))
    monkeypatch.setattr(planner, "busy_machine", lambda: False)
    planner._warned.clear()
    return tmp_path / "plans.json"


def data(n: int = jit.TRIAL_ROWS + 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.random((SIZES[0], n)).astype(np.float32), rng.integers(0, SIZES[-1], n)


def run(progress: bool = False, **kw: Any) -> list[np.ndarray]:
    """Two float32 epochs on the default CPU device (``cpu-jit``), seed 5; with ``progress``
    each epoch runs in slices, as under the progress bar."""
    X, labels = data()
    net = fastbp.Network(SIZES, device="cpu-jit", seed=5, **kw)
    hook = (lambda done, total, n: None) if progress else None
    net.train(X, labels, epochs=2, batch_size=10, eta=0.5, momentum=0.5, dropout=0.2,
              progress=hook)
    return [np.array(p) for p in [*net.weights, *net.biases, *net.velocities]]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def plan_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"plan for {KEY}" in r.getMessage()]


def test_an_epoch_in_slices_is_planned_as_a_whole_and_gives_the_same_numbers(cache, caplog):
    """Under the progress bar the epoch runs in slices too short to measure; the device plans
    the whole epoch first, so the slices run the plan an unsliced run reads back."""
    with caplog.at_level(logging.INFO, logger="fastbp"):
        sliced = run(progress=True)
        whole = run()
    lines = plan_lines(caplog)
    assert "(measured" in lines[0] and "(cache" in lines[1], lines
    assert same(sliced, whole)


def test_a_busy_first_run_and_a_quiet_second_give_the_same_numbers(cache, monkeypatch):
    monkeypatch.setattr(planner, "busy_machine", lambda: True)
    busy = run()
    monkeypatch.setattr(planner, "busy_machine", lambda: False)
    quiet = run()
    assert json.loads(cache.read_text())["plans"][KEY]["busy"] is True
    assert same(busy, quiet)


def test_a_quiet_first_run_and_a_busy_second_give_the_same_numbers(cache, monkeypatch):
    quiet = run()
    monkeypatch.setattr(planner, "busy_machine", lambda: True)
    assert same(run(), quiet)


def test_measuring_and_reading_the_cache_give_the_same_numbers(cache):
    """The run that measures trains with the choice it records (its trials run on copies)."""
    first = run()
    assert json.loads(cache.read_text())["plans"][KEY]["choice"]
    assert same(run(), first)
    assert same(run(progress=True), first)


def test_a_disturbed_plan_is_measured_again_without_changing_the_numbers(cache):
    """A recorded plan marked for measuring again (its trial was disturbed) is measured
    against the candidates that round as it does: the next run's numbers are the same."""
    first = run()
    recorded = json.loads(cache.read_text())["plans"][KEY]["choice"]
    planner.forget(KEY, jit.fingerprint())
    again = run()
    assert jit.rounding(json.loads(cache.read_text())["plans"][KEY]["choice"]) == \
        jit.rounding(recorded)
    assert same(again, first)
