"""What the suite holds a device to: data, the per-sample reference epoch, the float64 σ and the
distance in units in the last place.

The reference is :mod:`fastbp.core.reference`, the book's per-sample loop in float64 NumPy.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Sequence

import numpy as np

from ..core import neurons, reference
from ..core.costs import output_of
from ..devices.cpu.blas_threads import one_thread

ATOL = 1e-10  # float64: every parameter within this of the oracle's
COST_RTOL = 1e-9  # the epoch's cost (sums of logarithms, each rounded where it is computed)
U32 = 2.0**-24  # float32's unit roundoff u: one rounding changes a value by at most u·|value|
F32_ULPS = 8  # roundings per reduced term allowed for: two sides, each a few operations


def float32_tolerance(reduction: float, ulps: float = F32_ULPS) -> float:
    """The float32 rounding bound of a computation whose longest sum has ``reduction`` terms:
    a dot product of length ``K`` computed in float32 differs from the exact one by at most
    ``γ_K·Σ|x_i y_i|`` with ``γ_K ≈ K·u`` (Higham, *Accuracy and Stability of Numerical
    Algorithms*, §3.1), whatever the BLAS library's order of summation. So two float32 results
    of the same training (or one against float64) agree to ``ulps · K · u`` of the arrays'
    magnitude; a wrong index or a missing term is off by 1e-3 or more."""
    return ulps * max(1.0, float(reduction)) * U32


def reduction_length(sizes: Sequence[int], batch_size: int, steps: int = 1,
                     momentum: float = 0.0, roundings: int = 1) -> float:
    """The float32 rounding terms of ``steps`` training steps on ``sizes`` at batch
    ``batch_size``: the longest sum of a step (the feedforward products reduce over ``n_{l-1}``
    inputs, BP2 over ``n_{l+1}`` units, BP3 and BP4 over the ``m`` columns of the batch), plus
    ``roundings`` of every parameter per step (``W ← W − αΔ`` is one; weight decay, a velocity
    and the L1 term add one each: the errors of successive steps add), each carried into later
    steps ``1/(1 − μ)`` times by momentum ``μ``."""
    return (max(*sizes, int(batch_size)) + int(roundings) * int(steps)) / (1.0 - float(momentum))


def training_terms(sizes: Sequence[int], batch_size: int, n: int, epochs: int = 1,
                   momentum: float = 0.0, roundings: int = 2) -> float:
    """:func:`reduction_length` of ``epochs`` epochs over ``n`` samples (by default the
    gradient step and weight decay round each parameter)."""
    return reduction_length(sizes, batch_size, epochs * -(-int(n) // int(batch_size)), momentum,
                            roundings)


def assert_float32_epoch(cost: float, got: Sequence[Any], total: float,
                         want: Sequence[np.ndarray], path: Any) -> None:
    """A float32 epoch of ``path`` (its ``sizes``, ``batch_size``, ``n``) against the float64
    oracle's: the parameters within float32 rounding of an epoch's steps, and the mean cost
    within the rounding of its ``n`` samples' sums."""
    assert_float32_close(got, want, training_terms(path.sizes, path.batch_size, path.n),
                         what=f"{path} float32 epoch")
    tol = float32_tolerance(path.n + max(path.sizes))
    assert abs(cost - total / path.n) <= tol * abs(total / path.n), (
        f"{path} float32 epoch: cost {cost!r}, the oracle's {total / path.n!r} (rel. {tol:.3g})")


def amplification(run: Any, start: Sequence[np.ndarray], seed: int = 0) -> float:
    """How much the float64 computation ``run(params) -> params`` magnifies a relative change of
    one rounding (``u``) in every entry of ``start``: the largest relative change of an end
    array, over ``u``, at least 1. Training steps can magnify the roundings of earlier steps
    (a large η at batch 1 does); this measures it on the problem itself, in float64, so no
    float32 library's result enters the tolerance."""
    rng = np.random.default_rng(seed)
    base = run([np.array(p, dtype=np.float64) for p in start])
    moved = run([np.array(p, dtype=np.float64) * (1 + U32 * rng.choice([-1.0, 1.0], np.shape(p)))
                 for p in start])
    worst = 0.0
    for a, b in zip(base, moved):
        scale = max(float(np.max(np.abs(a), initial=0.0)), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return max(1.0, worst / U32)


def assert_float32_close(got: Sequence[Any], want: Sequence[Any], reduction: float,
                         what: str = "", ulps: float = F32_ULPS) -> None:
    """Every array of ``got`` within :func:`float32_tolerance` of ``want``, relative to the
    array's largest magnitude (a rounding bound scales with the terms summed, not with the one
    entry: an entry near 0 may hold the rounding of its larger neighbours)."""
    tol = float32_tolerance(reduction, ulps)
    assert len(got) == len(want), f"{what}: {len(got)} arrays, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        assert g.shape == w.shape, f"{what}: array {i} has shape {g.shape}, expected {w.shape}"
        scale = max(float(np.max(np.abs(w), initial=0.0)), np.finfo(np.float32).tiny)
        worst = float(np.max(np.abs(g - w), initial=0.0))
        assert worst <= tol * scale, (
            f"{what}: parameter array {i} (W then b) differs by {worst:.3g}, more than the "
            f"float32 rounding bound {tol:.3g} × max|want| {scale:.3g} (K = {reduction:g})")


def batch(sizes: Sequence[int], m: int, seed: int = 0, dtype: str = "float64"
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` ``(n_in, m)`` in [0, 1), integer ``labels`` and the one-hot ``Y`` ``(n_out, m)``."""
    rng = np.random.default_rng(seed)
    X = rng.random((sizes[0], m)).astype(dtype)
    labels = rng.integers(0, sizes[-1], m)
    Y = np.zeros((sizes[-1], m), dtype=dtype)
    Y[labels, np.arange(m)] = 1.0
    return X, labels, Y


def parameters(net: Any) -> list[np.ndarray]:
    """Host float64 copies of ``W^2 … W^L, b^2 … b^L``."""
    return [np.array(p, dtype=np.float64) for p in [*net.weights, *net.biases]]


def next_order(net: Any, n: int) -> np.ndarray:
    """The sample order ``net``'s next shuffled epoch draws (its generator is not advanced)."""
    return copy.deepcopy(net.rng).permutation(n)


_cache: dict[tuple, tuple[list[np.ndarray], float]] = {}  # reference epochs already run


def reference_epoch(params: list[np.ndarray], X: np.ndarray, Y: np.ndarray, batch_size: int,
                    eta: float, cost: Any, order: np.ndarray, lmbda: float = 0.0,
                    kinds: Sequence[str] | None = None) -> tuple[list[np.ndarray], float]:
    """One epoch of the book's SGD from ``params`` (``W^2 … W^L, b^2 … b^L``) in the sample
    ``order``, with the L2 step for ``lmbda`` > 0 (``kinds``: each layer's neuron, default
    sigmoid hidden layers and the cost's output): the parameters after it and the summed cost
    of its batches, each taken before its update. Results are kept for the same arguments."""
    digest = hashlib.sha256()
    for a in (*params, X, Y, order):
        digest.update(np.ascontiguousarray(a).tobytes())
    layers = len(params) // 2
    kinds = tuple(kinds) if kinds is not None else \
        neurons.layer_kinds(layers, "sigmoid", output_of(cost))
    key = (digest.hexdigest(), batch_size, eta, getattr(cost, "name", repr(cost)), lmbda, kinds)
    if key not in _cache:
        weights = [p.copy() for p in params[:layers]]
        biases = [p.copy() for p in params[layers:]]
        n, total = X.shape[1], 0.0
        with one_thread():  # products of one sample: threads would only wait for each other
            for start in range(0, n, batch_size):
                cols = order[start : start + batch_size]
                total += cost.fn(reference.feedforward(weights, biases, X[:, cols], kinds),
                                 Y[:, cols])
                reference.sgd_epoch(weights, biases, X[:, cols], Y[:, cols],
                                    batch_size=len(cols), eta=eta, cost=cost, lmbda=lmbda, n=n,
                                    kinds=kinds)
        _cache[key] = (weights + biases, total)
    got, total = _cache[key]
    return [p.copy() for p in got], total


def generic_epoch(net: Any, X: Any, labels: Any, batch_size: int, eta: float, lmbda: float,
                  order: np.ndarray) -> float:
    """One epoch of ``net`` over ``order`` through the core's generic loop (only the device's
    operations, never its own epoch); returns the summed cost."""
    from ..core import epoch as generic

    plan = net.epoch_plan(X, labels, batch_size=batch_size, eta=eta, lmbda=lmbda)
    be = net.backend
    with be.activate():
        plan.start(be.index_array(order))
        return float(generic.sgd_epoch(be, plan))


def assert_parameters_close(got: Sequence[Any], want: Sequence[np.ndarray], atol: float,
                            rtol: float = 0.0, what: str = "") -> None:
    """Every array of ``got`` equals the one of ``want`` within ``atol + rtol·|want|``."""
    assert len(got) == len(want), f"{what}: {len(got)} arrays, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g, dtype=np.float64)
        assert g.shape == w.shape, f"{what}: array {i} has shape {g.shape}, expected {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                   err_msg=f"{what}: parameter array {i} (W then b)")


def sigmoid64(z: Any) -> np.ndarray:
    """σ(z) in float64, accurate to an ulp everywhere: ``e^{min(z,0)} / (1 + e^{−|z|})``."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def ulps(got: Any, want: Any) -> np.ndarray:
    """How many float32 values lie between ``got`` and ``want`` rounded to float32 (per entry;
    both non-negative)."""
    g = np.ascontiguousarray(got, dtype=np.float32).view(np.int32).astype(np.int64)
    w = np.ascontiguousarray(want, dtype=np.float64).astype(np.float32).view(np.int32)
    return np.abs(g - w.astype(np.int64))
