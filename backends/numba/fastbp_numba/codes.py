"""What the compiled kernels compile, as the integer codes they take: a cost's code and each
layer's neuron code (:data:`fastbp_numba.neurons.KIND_CODES`). A network whose cost or neurons
have none runs the ``cpu`` device's loop, on the table's forms."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from fastbp.core.costs import CrossEntropyCost, LogLikelihoodCost, QuadraticCost, output_of
from fastbp.core.neurons import layer_kinds

Spec = tuple[int, np.ndarray]  # the kernels' (cost code, each layer's neuron code)


def cost_codes(kernels: ModuleType) -> dict[Any, int]:
    """The costs the kernels compile, with their codes."""
    return {QuadraticCost: kernels.QUADRATIC, CrossEntropyCost: kernels.CROSS_ENTROPY,
            LogLikelihoodCost: kernels.LOG_LIKELIHOOD}


def spec(kernels: ModuleType, cost: Any, kinds: Any, layers: int) -> Spec | None:
    """The cost's code and each layer's neuron code (an int64 array), or ``None`` when the
    kernels do not compile the cost or a layer's neuron (``kinds`` ``None``: sigmoid hidden
    layers and the cost's output)."""
    code = next((c for cls, c in cost_codes(kernels).items() if cost is cls), None)
    if code is None:
        return None
    if kinds is None:
        kinds = layer_kinds(layers, "sigmoid", output_of(cost))
    if any(kind not in kernels.KIND_CODES for kind in kinds):
        return None
    return code, np.array([kernels.KIND_CODES[kind] for kind in kinds], dtype=np.int64)


def compiles(kernels: ModuleType) -> str:
    """What the kernels compile, in words."""
    costs = ", ".join(c.__name__ for c in cost_codes(kernels))
    return f"the costs {costs} and the neurons {', '.join(sorted(kernels.KIND_CODES))}"


def not_compiled(kernels: ModuleType, cost: Any, kinds: Any) -> str:
    """What of ``cost`` and ``kinds`` the kernels do not compile, in words."""
    if not any(cost is c for c in cost_codes(kernels)):
        return f"the cost {getattr(cost, '__name__', cost)}"
    missing = sorted({kind for kind in kinds or () if kind not in kernels.KIND_CODES})
    return f"the neuron {missing[0]!r}" if missing else "this network"
