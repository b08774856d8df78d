"""A network's training state as one value: what an epoch changes and what rolling one back
gives back.

Training goes from state to state, as in JAX's ``init, update, get_params``: the epoch driver
(:func:`fastbp.model.driver.train_epochs`) takes a :class:`TrainState` and, after each epoch that
finishes, makes the next one. An epoch that does not finish (Ctrl-C, divergence, any error)
makes none: rolling it back is keeping the state it started from. The generator and the history
are values the epoch never edits (it draws from its own copy of the generator); the parameters
are the device arrays the steps update in place, so the divergence guard
(:mod:`fastbp.core.guard`) copies them back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..core.plan import Parameters
from ..core.records import EpochRecord, History


@dataclass(frozen=True, eq=False)
class TrainState:
    """``params``: the weights ``W^l``, biases ``b^l`` and velocities ``v`` (live device arrays,
    :class:`~fastbp.core.plan.Parameters`); ``rng``: the generator that draws each epoch's
    order and dropout seed; ``history``: one :class:`EpochRecord` per finished epoch (so
    ``len(history)`` numbers the next one)."""

    params: Parameters
    rng: np.random.Generator
    history: History

    def generator(self) -> np.random.Generator:
        """A generator at this state's point, for one epoch to draw from (this state's stays
        as it is, so an epoch that does not finish leaves it untouched)."""
        return copy.deepcopy(self.rng)

    def after(self, rng: np.random.Generator, record: EpochRecord) -> TrainState:
        """The state once an epoch has finished: its generator ``rng`` (advanced by its draws)
        and the history with its ``record``; the same parameter arrays."""
        return TrainState(self.params, rng, History([*self.history, record]))
