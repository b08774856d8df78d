"""One training run's settings, checked once: what ``Network.train``, ``fastbp.parallel.train``
and ``fastbp train`` all take (the callbacks, the progress hook and the schedule are objects of
their own and stay beside it).

A :class:`TrainConfig` is frozen: the schedule changes ``η`` between epochs by making a new one
(:meth:`TrainConfig.with_eta`), never by editing the one a run started from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .guard import check_on_diverge
from .validate import check_count, check_flag, check_step


@dataclass(frozen=True)
class TrainConfig:
    """``epochs`` of mini-batch SGD at ``batch_size`` with rate ``η`` (``eta``), L2 weight ``λ``
    (``lmbda``), momentum ``μ``, L1 weight ``λ₁`` (``l1``) and dropout probability ``p``; samples
    shuffled each epoch unless ``shuffle`` is false; ``verbose`` prints a line per epoch;
    ``on_diverge`` is ``"raise"`` or ``"continue"``. Every value is checked when it is made, so
    a bad one is refused before any data is read or moved (``ConfigError`` naming it)."""

    epochs: int
    batch_size: int
    eta: float
    lmbda: float = 0.0
    momentum: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    shuffle: bool = True
    verbose: bool = False
    on_diverge: str = "raise"

    def __post_init__(self) -> None:
        eta, lmbda, mu, l1, p = check_step(self.eta, self.lmbda, self.momentum, self.l1,
                                           self.dropout)
        checked = {"epochs": check_count("epochs", self.epochs, low=0),
                   "batch_size": check_count("batch_size", self.batch_size, low=1),
                   "eta": eta, "lmbda": lmbda, "momentum": mu, "l1": l1, "dropout": p,
                   "shuffle": check_flag("shuffle", self.shuffle),
                   "verbose": check_flag("verbose", self.verbose),
                   "on_diverge": check_on_diverge(self.on_diverge)}
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def with_eta(self, eta: float) -> TrainConfig:
        """The same settings at another rate (the schedule's halving), checked."""
        return dataclasses.replace(self, eta=eta)
