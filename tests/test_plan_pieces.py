"""The epoch plan's typed pieces (:mod:`fastbp.core.plan`) and the one update rule
(:mod:`fastbp.core.update`): frozen step settings, the network's caches shared by its plans and
each plan's own, no device state set on the plan, and the rule's two forms against the book's
formulas."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastbp
from fastbp.core.epoch import run_epoch
from fastbp.core.plan import (
    Cache,
    DeviceCaches,
    EpochPlan,
    Layers,
    Parameters,
    StepSettings,
    TrainingData,
)
from fastbp.core.update import apply_deltas, apply_gradients
from fastbp.testing import oracle


def test_step_settings_are_frozen_and_derive_the_step_terms() -> None:
    s = StepSettings(10, 0.5, 1000, lmbda=5.0, mu=0.0, l1=2.0)
    assert s.decay == 1.0 - 0.5 * 5.0 / 1000 and s.l2_step == 0.5 * 5.0 / 1000
    assert s.l1_step == 0.5 * 2.0 / 1000 and s.velocity and not s.plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.eta = 1.0  # type: ignore[misc]
    t = s.with_eta(0.25)
    assert (s.eta, t.eta) == (0.5, 0.25) and t.decay == 1.0 - 0.25 * 5.0 / 1000
    assert t.l1_step == 0.25 * 2.0 / 1000 and t.batch_size == 10 and t.n == 1000
    assert StepSettings(10, 0.5, 1000).plain
    assert not StepSettings(10, 0.5, 1000, dropout=0.5).plain


def test_a_plan_with_momentum_needs_the_velocities() -> None:
    w, b = [np.zeros((3, 4))], [np.zeros((3, 1))]
    data = TrainingData(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(fastbp.ConfigError, match="velocities"):
        EpochPlan(Layers([4, 3], fastbp.QuadraticCost), StepSettings(5, 1.0, 5, mu=0.5),
                  Parameters(w, b), data)


def test_set_eta_gives_the_plan_new_settings_and_leaves_the_old_ones() -> None:
    X, labels, _ = oracle.batch([6, 5, 3], 30)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=1)
    plan = net.epoch_plan(X, labels, batch_size=10, eta=0.5, lmbda=3.0)
    before = plan.settings
    plan.set_eta(0.125)
    assert plan.settings is not before and before.eta == 0.5
    assert plan.settings.decay == 1.0 - 0.125 * 3.0 / 30


def test_a_network_shares_its_cache_between_plans_and_each_plan_has_its_own() -> None:
    X, labels, _ = oracle.batch([6, 5, 3], 30)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=1)
    a = net.epoch_plan(X, labels, batch_size=10, eta=0.5)
    b = net.epoch_plan(X, labels, batch_size=10, eta=0.5)
    assert a.cache is b.cache and a.bound is not b.bound

    class Mine:
        pass

    caches = DeviceCaches()
    assert caches.of(Mine) is caches.of(Mine) and isinstance(caches.of(Mine), Mine)
    assert Cache().of(Mine) is not caches.of(Mine)


@pytest.mark.parametrize("device", ["cpu", "cpu-jit"])
def test_no_device_keeps_anything_on_the_plan_itself(device: str) -> None:
    """A device's state lives in the plan's typed caches, never in attributes of its own."""
    X, labels, _ = oracle.batch([6, 5, 3], 40)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=1, device=device)
    plan = net.epoch_plan(X, labels, batch_size=10, eta=0.5, momentum=0.5, dropout=0.2)
    plan.start(net.backend.index_array(np.arange(40)), 7)
    run_epoch(net.backend, plan)
    assert set(vars(plan)) == {f.name for f in dataclasses.fields(plan)}
    assert all(isinstance(k, type) for k in plan.cache._caches)
    assert set(plan.cache.workspaces) <= {10}


def _params(rng: np.random.Generator, velocities: bool) -> Parameters:
    shapes = [(4, 6), (3, 4)]
    return Parameters([rng.normal(size=s) for s in shapes],
                      [rng.normal(size=(s[0], 1)) for s in shapes],
                      [rng.normal(size=s) for s in shapes] + [rng.normal(size=(s[0], 1))
                                                              for s in shapes]
                      if velocities else None)


def test_the_update_rule_is_the_books() -> None:
    """``W ← (1 − ηλ/n) W − (η/m) g``, ``b ← b − (η/m) g``; with momentum and L1
    ``v ← μv − (η/m) g − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v``."""
    be = fastbp.devices.resolve("cpu", "float64")
    rng = np.random.default_rng(0)
    m = 7
    for s in (StepSettings(m, 0.5, 50, lmbda=2.0),
              StepSettings(m, 0.5, 50, lmbda=2.0, mu=0.75, l1=1.5)):
        params = _params(rng, s.velocity)
        start = [a.copy() for a in params.arrays()]
        gw = [rng.normal(size=w.shape) for w in params.weights]
        gb = [rng.normal(size=b.shape) for b in params.biases]
        want_w, want_b = [], []
        for l, (w, b) in enumerate(zip(start[:2], start[2:4])):
            if not s.velocity:
                want_w.append((1 - 0.5 * 2.0 / 50) * w - 0.5 / m * gw[l])
                want_b.append(b - 0.5 / m * gb[l])
                continue
            v_w, v_b = start[4 + l], start[6 + l]
            v = 0.75 * v_w - 0.5 / m * gw[l] - 0.5 * 2.0 / 50 * w - 0.5 * 1.5 / 50 * np.sign(w)
            want_w.append(w + v)
            want_b.append(b + 0.75 * v_b - 0.5 / m * gb[l])
        apply_gradients(be, s, params, [g.copy() for g in gw], [g.copy() for g in gb], m)
        for got, want in zip([*params.weights, *params.biases], [*want_w, *want_b]):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_the_folded_rule_is_the_rule_on_bp3_and_bp4() -> None:
    """:func:`apply_deltas` ends where :func:`apply_gradients` on ``δ aᵀ`` and ``Σ_j δ_j``
    ends, in both forms."""
    be = fastbp.devices.resolve("cpu", "float64")
    rng = np.random.default_rng(1)
    m = 5
    for s in (StepSettings(m, 0.3, 40, lmbda=1.0), StepSettings(m, 0.3, 40, mu=0.5)):
        a, b = _params(rng, s.velocity), None
        b = Parameters([w.copy() for w in a.weights], [x.copy() for x in a.biases],
                       None if a.velocities is None else [v.copy() for v in a.velocities])
        deltas = [rng.normal(size=(4, m)), rng.normal(size=(3, m))]
        inputs = [rng.normal(size=(6, m)), rng.normal(size=(4, m))]
        scratch_w = [np.empty_like(w) for w in a.weights]
        scratch_b = [np.empty_like(x) for x in a.biases]
        apply_deltas(be, s, a, deltas, inputs, scratch_w, scratch_b, m)
        apply_gradients(be, s, b, [d @ x.T for d, x in zip(deltas, inputs)],
                        [d.sum(axis=1, keepdims=True) for d in deltas], m)
        for got, want in zip(a.arrays(), b.arrays()):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
