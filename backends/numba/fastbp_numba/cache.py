"""The ``cpu-jit`` device's own cache, one of a network's :class:`~fastbp.core.plan.Cache`."""

from __future__ import annotations

from typing import Any


class JitCache:
    """What ``cpu-jit`` keeps per network: the row buffers and the dropout buffers by
    ``(sizes, m, dtype)``, and the planner's choice and trials per configuration key
    (:func:`fastbp_numba.planning.choose`). It lives with the network, not on the backend, so
    networks sharing one backend instance can train in different threads."""

    def __init__(self) -> None:
        self.rows: dict[tuple[tuple[int, ...], int, str], tuple[Any, ...]] = {}
        self.dropout: dict[tuple[tuple[int, ...], int, str], tuple[Any, ...]] = {}
        self.choices: dict[str, Any] = {}
        self.trials: dict[str, Any] = {}
