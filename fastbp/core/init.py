"""Initial parameters of fully connected layers, one place for ``Network`` and the book's
``default_weight_initializer`` / ``large_weight_initializer``.

``init="standard"`` (chapter 1, ``network.py``): ``W^l, b^l ~ N(0, 1)``. ``init="scaled"``
(chapter 3, ``network2.py``): ``W^l ~ N(0, g²/n_{l-1})`` with the neuron's gain ``g``
(:data:`fastbp.core.neurons.GAIN`: √2 for relu, He et al.), ``b^l ~ N(0, 1)``. The draws
come from the network's generator in one order (every bias, then every weight, layer by
layer), so a seed gives the same parameters on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .neurons import GAIN

INITS = ("standard", "scaled")


def draw_parameters(rng: np.random.Generator, sizes: Sequence[int], kinds: Sequence[str],
                    init: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(weights, biases)`` in float64 on the host: ``W^l`` ``(n_l, n_{l-1})``, ``b^l``
    ``(n_l, 1)``, drawn from ``rng`` as ``init`` says for layers of ``kinds``."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {INITS}, got {init!r}")
    pairs = list(zip(sizes[:-1], sizes[1:]))
    biases = [rng.standard_normal((n, 1)) for _, n in pairs]
    weights = [rng.standard_normal((n, k)) * (GAIN[kind] / np.sqrt(k) if init == "scaled" else 1.0)
               for (k, n), kind in zip(pairs, kinds)]
    return weights, biases
