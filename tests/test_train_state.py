"""Training goes from :class:`~fastbp.model.state.TrainState` to state
(:func:`fastbp.model.driver.train_epochs`): the state a run starts from is never edited, each
finished epoch makes a new one, and an epoch that does not finish makes none."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastbp
from fastbp.core.records import History
from fastbp.model import driver
from fastbp.model.state import TrainState
from fastbp.testing import oracle


def _setup(momentum: float = 0.0) -> tuple[Any, Any, TrainState]:
    X, labels, _ = oracle.batch([6, 5, 3], 40)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=3)
    plan = net.epoch_plan(X, labels, batch_size=10, eta=0.5, momentum=momentum)
    return net, plan, TrainState(plan.params, net.rng, net.history)


def test_each_finished_epoch_makes_a_new_state_and_the_first_stays() -> None:
    net, plan, start = _setup()
    rng_before = start.rng.bit_generator.state
    kept: list[TrainState] = []
    end = driver.train_epochs(net.backend, start, plan, None, epochs=3, shuffle=True, eta=0.5,
                              keep=kept.append)
    assert len(kept) == 3 and end is kept[-1]
    assert [len(s.history) for s in kept] == [1, 2, 3]
    assert len(start.history) == 0 and start.rng.bit_generator.state == rng_before
    assert end.params is start.params and end.rng is not start.rng
    # the end state's generator is where three epochs of draws leave the start's
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_before
    for _ in range(3):
        rng.permutation(40)
    assert end.rng.bit_generator.state == rng.bit_generator.state


def test_an_epoch_that_does_not_finish_keeps_the_previous_state() -> None:
    net, plan, start = _setup(momentum=0.5)
    kept: list[TrainState] = []
    calls = {"n": 0}

    def epoch_fn(p: Any) -> float:
        total = driver.default_epoch(net.backend)(p)
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's steps ran, then Ctrl-C
            raise KeyboardInterrupt
        return total

    with pytest.raises(KeyboardInterrupt):
        driver.train_epochs(net.backend, start, plan, None, epochs=3, shuffle=True, eta=0.5,
                            epoch_fn=epoch_fn, keep=kept.append)
    assert len(kept) == 1
    after_one = [np.array(a) for a in plan.params.arrays()]
    # the same first epoch again, from the same start, on another network
    other, other_plan, other_start = _setup(momentum=0.5)
    one = driver.train_epochs(other.backend, other_start, other_plan, None, epochs=1,
                              shuffle=True, eta=0.5)
    for got, want in zip(after_one, other_plan.params.arrays()):
        np.testing.assert_array_equal(got, want)
    assert kept[0].rng.bit_generator.state == one.rng.bit_generator.state
    assert [r.cost for r in kept[0].history] == [r.cost for r in one.history]


def test_the_network_takes_each_finished_state_before_its_callback() -> None:
    X, labels, _ = oracle.batch([6, 5, 3], 40)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=3)
    seen: list[tuple[int, Any]] = []

    def callback(record: Any, n: Any) -> None:
        seen.append((len(n.history), n.history[-1] is record))

    records = net.train(X, labels, epochs=2, batch_size=10, eta=0.5, callback=callback)
    assert seen == [(1, True), (2, True)]
    assert isinstance(records, History) and list(records) == list(net.history)
