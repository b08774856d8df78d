"""What a network offers the helpers that train, monitor, show and hold it (the epoch driver,
the progress bar, the monitors, the parameter lists): a structural type, so those helpers
depend on this contract and :class:`~fastbp.model.network.Network` on them, never the other
way round."""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import numpy as np

from ..core.ops import Array
from ..core.records import History
from ..devices.backend import Backend


class Trainee(Protocol):
    """A fully connected network as its helpers see it."""

    backend: Backend
    sizes: list[int]
    kinds: tuple[str, ...]
    cost: Any
    rng: np.random.Generator
    history: History

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def weights(self) -> Any: ...

    @property
    def biases(self) -> Any: ...

    @property
    def velocities(self) -> Any: ...

    def accuracy(self, X: Any, labels: Any) -> float: ...

    def count_correct(self, X: Any, labels: Any) -> int: ...

    def train(self, X: Any, Y: Any, **options: Any) -> History: ...

    def to(self, device: Any) -> Any: ...

    def outputs_in_chunks(self, X: Any, chunk: int = 10_000) -> Iterator[Array]:
        """``a^L`` for consecutive column blocks of ``X`` (device arrays)."""
        ...
