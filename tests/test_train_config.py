"""One training configuration, checked once (fastbp.core.config.TrainConfig): frozen, every
value checked when made, the same object behind Network.train, fastbp.parallel.train and the
command line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastbp
from fastbp.core.config import TrainConfig


def test_a_config_is_checked_when_made_and_frozen() -> None:
    config = TrainConfig(epochs=2, batch_size=10, eta=3, momentum=0.5)
    assert (config.eta, config.momentum, config.on_diverge) == (3.0, 0.5, "raise")
    assert isinstance(config.eta, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eta = 1.0  # type: ignore[misc]
    halved = config.with_eta(1.5)
    assert halved.eta == 1.5 and config.eta == 3.0 and halved.momentum == 0.5


@pytest.mark.parametrize("kw,message", [
    ({"eta": -3}, "eta must be > 0"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"epochs": -1}, "epochs must be >= 0"),
    ({"momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"dropout": 1.0}, "dropout must be a probability in [0, 1)"),
    ({"l1": -1}, "l1 must be >= 0"),
    ({"on_diverge": "ignore"}, "on_diverge must be one of"),
    ({"shuffle": "yes"}, "shuffle must be"),
])
def test_every_value_is_refused_with_its_name(kw, message) -> None:
    base = {"epochs": 1, "batch_size": 10, "eta": 0.5}
    with pytest.raises(fastbp.ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig(**{**base, **kw})


def test_train_and_train_with_a_config_take_the_same_steps() -> None:
    rng = np.random.default_rng(0)
    X, labels = rng.random((6, 40)), rng.integers(0, 3, 40)
    a = fastbp.Network([6, 4, 3], seed=2, dtype="float64")
    b = fastbp.Network([6, 4, 3], seed=2, dtype="float64")
    a.train(X, labels, epochs=2, batch_size=5, eta=0.5, momentum=0.3, dropout=0.2)
    b.train_with(TrainConfig(epochs=2, batch_size=5, eta=0.5, momentum=0.3, dropout=0.2),
                 X, labels)
    for x, y in zip([*a.weights, *a.biases], [*b.weights, *b.biases]):
        assert np.array_equal(x, y)
