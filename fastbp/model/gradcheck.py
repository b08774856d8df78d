"""Gradient check: backprop against central finite differences of the cost."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validate import check_batch, check_count, check_positive, check_seed, check_targets
from ..errors import ConfigError


def gradcheck(net: Any, X: Any, Y: Any, *, eps: float = 1e-4, max_entries: int = 200,
              floor: float = 1e-4, seed: int = 0) -> float:
    """The worst relative error between backprop and ``(C(p + ε) − C(p − ε)) / 2ε``.

    ``C`` is the cost summed over the columns of ``X`` (what ``backprop`` differentiates). Each
    layer's weights and biases are checked at up to ``max_entries`` randomly chosen entries. The
    error of an entry is ``|g − g_fd| / max(|g|, |g_fd|, floor)``: gradients smaller than
    ``floor`` are held to an absolute ``floor × error``, as finite differences cannot resolve
    them better. Use a ``float64`` network: in float32 the differences drown in rounding.
    """
    from .network import Network

    if not isinstance(net, Network):
        raise ConfigError(f"gradcheck checks a fastbp.Network, got {type(net).__name__}")
    eps = check_positive("eps", eps)
    floor = check_positive("floor", floor)
    max_entries = check_count("max_entries", max_entries, low=1)
    rng = check_seed(seed)
    if net.dtype != "float64":
        raise ConfigError(f"gradcheck needs a float64 network (this one is {net.dtype}): "
                          "build it with dtype='float64' or use net.to(...) on a float64 copy")
    X = np.asarray(check_batch(X, net.sizes[0], "X"), dtype=np.float64)
    Y = np.asarray(check_targets(Y, net.sizes[-1], int(X.shape[1]), "Y"), dtype=np.float64)
    nabla_b, nabla_w = net.backprop(X, Y)
    worst = 0.0
    for params, grads in ((net.weights, nabla_w), (net.biases, nabla_b)):
        for l in range(len(params)):
            p = np.array(params[l])
            flat = rng.permutation(p.size)[:max_entries]
            for k in flat:
                idx = np.unravel_index(k, p.shape)
                orig = p[idx]
                p[idx] = orig + eps
                params[l] = p
                c_plus = net.total_cost(X, Y)
                p[idx] = orig - eps
                params[l] = p
                c_minus = net.total_cost(X, Y)
                p[idx] = orig
                params[l] = p
                numeric = (c_plus - c_minus) / (2 * eps)
                analytic = float(grads[l][idx])
                scale = max(abs(numeric), abs(analytic), floor)
                worst = max(worst, abs(numeric - analytic) / scale)
    return worst
