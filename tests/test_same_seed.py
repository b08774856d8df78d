"""Same seed, same device, same machine: the same numbers, whatever the terminal (an epoch run
in slices for the progress bar), the machine's load, or the state of the plan cache. The
planner's candidates may round differently (another GEMM library, a step split in halves), so a
configuration's plan is chosen once per machine and recorded (:mod:`fastbp.devices.planner`),
and its trials, real steps of the first epochs, are the same steps in every run
(:func:`fastbp_numba.planning.schedule`)."""

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
    monkeypatch.setattr(planner, "busy_since", lambda mark: False)
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


def busy(monkeypatch: pytest.MonkeyPatch, yes: bool) -> None:
    """Other processes keep the machine busy (``yes``) or not, as the planner sees it."""
    monkeypatch.setattr(planner, "busy_machine", lambda: yes)
    monkeypatch.setattr(planner, "busy_since", lambda mark: yes)


def test_a_busy_first_run_and_a_quiet_second_give_the_same_numbers(cache, monkeypatch):
    busy(monkeypatch, True)
    loaded = run()
    assert json.loads(cache.read_text())["plans"][KEY]["busy"] is True
    busy(monkeypatch, False)
    quiet = run()
    assert same(loaded, quiet)


def test_a_quiet_first_run_and_a_busy_second_give_the_same_numbers(cache, monkeypatch):
    quiet = run()
    busy(monkeypatch, True)
    assert same(run(), quiet)


def test_measuring_and_reading_the_cache_give_the_same_numbers(cache):
    """The run that measures trains its trials (real steps, each candidate's in turn), then
    the choice it records; a run that reads the choice back trains the same trials first."""
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


def test_epochs_in_separate_calls_give_the_numbers_of_one_call(cache):
    """The trials are placed by the epoch's number in the network's history: a second call of
    ``train`` (a resumed run) goes on where the first left off, inside the trials or past them,
    and gives the numbers of one call of both epochs."""
    X, labels = data()
    whole = run()
    net = fastbp.Network(SIZES, device="cpu-jit", seed=5)
    for _ in range(2):
        net.train(X, labels, epochs=1, batch_size=10, eta=0.5, momentum=0.5, dropout=0.2)
    assert same([np.array(p) for p in [*net.weights, *net.biases, *net.velocities]], whole)


def test_the_trials_span_epochs_where_one_epoch_cannot_hold_them(cache):
    """At a batch whose epoch holds too few steps for every candidate's trials, the trials go
    on into the next epochs; the run that measures and the run that reads back agree."""
    def big_batch() -> list[np.ndarray]:
        X, labels = data()
        net = fastbp.Network(SIZES, device="cpu-jit", seed=5)
        net.train(X, labels, epochs=5, batch_size=1000, eta=0.5)
        return [np.array(p) for p in [*net.weights, *net.biases]]

    options = jit.candidates(SIZES, 1000, data()[0].shape[1])
    trials = jit.schedule(SIZES, 1000, data()[0].shape[1], options)
    assert len(options) >= 2 and trials[-1].start + trials[-1].steps > 5  # five steps an epoch
    first = big_batch()
    assert "m=1000" in next(iter(json.loads(cache.read_text())["plans"]))
    assert same(big_batch(), first)


def test_a_run_cut_short_in_its_trials_and_the_next_give_the_same_numbers(cache):
    """A run that ends inside its trials records the finalists it chose so far (the trials'
    layout from there on), so the next run trains the same trials: one epoch twice gives the
    same numbers, and the measurement finishes in a later run, whose numbers a run that reads
    the choice back repeats."""
    X, labels = data()

    def one(epochs: int) -> list[np.ndarray]:
        net = fastbp.Network(SIZES, device="cpu-jit", seed=5)
        net.train(X, labels, epochs=epochs, batch_size=10, eta=0.5, momentum=0.5)
        return [np.array(p) for p in [*net.weights, *net.biases, *net.velocities]]

    first = one(1)
    entry = json.loads(cache.read_text())["plans"][KEY]
    assert entry["pending"] and entry["finalists"]  # some rounds' finalists, not yet all
    assert same(one(1), first)
    both = one(2)
    entry = json.loads(cache.read_text())["plans"][KEY]
    groups = jit.groups(jit.candidates(SIZES, 10, X.shape[1]))
    assert "pending" not in entry and len(entry["finalists"]) == len(groups)
    assert all(len(rounds) == jit.ROUNDS - 1 for rounds in entry["finalists"])
    assert same(one(2), both)
