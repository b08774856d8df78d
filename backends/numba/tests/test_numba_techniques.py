"""``cpu-jit`` runs chapter 3's techniques (momentum, L1, dropout) in its own compiled epoch, on
every strategy and path, and ends where the ``cpu`` device (held to the per-sample oracle by the
conformance suite) ends: the generic loop never runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import backend as jit_backend  # noqa: E402
from fastbp_numba import epoch, planning  # noqa: E402

import fastbp  # noqa: E402
from fastbp.core import epoch as generic  # noqa: E402
from fastbp.testing import oracle, paths  # noqa: E402

SIZES = [12, 9, 6, 4]
# each technique without dropout, dropout alone (the plain update), all of them at once
SETTINGS = {
    "momentum-l1": {"momentum": 0.9, "l1": 2.0},
    "dropout": {"dropout": 0.5},
    "all": {"momentum": 0.6, "l1": 1.0, "dropout": 0.3},
}
STRATEGIES = ["one-thread", "overlap", "two-threads", "blas-threads"]
# the compiled epochs with the techniques (fastbp_numba.epoch) each strategy calls
RUNS = {"one-thread": "sgd_epoch_tech", "overlap": "sgd_rows_tech",
        "two-threads": "sgd_epoch_half_tech", "blas-threads": "sgd_rows_tech"}


def data(sizes: list[int], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def train(device: str, sizes: list[int], X: np.ndarray, labels: np.ndarray, batch_size: int,
          dtype: str = "float64", epochs: int = 2, **kw: Any) -> list[np.ndarray]:
    """The parameters and velocities after ``epochs`` shuffled epochs with L2 and ``kw``."""
    net = fastbp.Network(sizes, device=device, dtype=dtype, seed=7, init="scaled",
                         cost=fastbp.LogLikelihoodCost, activation="relu")
    net.train(X.astype(dtype), labels, epochs=epochs, batch_size=batch_size, eta=0.3, lmbda=4.0,
              **kw)
    return [*net.weights, *net.biases, *(net.velocities or [])]


def compiled_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The generic loop refuses to run; returns the names of the compiled epochs of
    :mod:`fastbp_numba.epoch` with the techniques called."""
    def refuse(*args: Any, **kw: Any) -> None:
        raise AssertionError("the generic epoch ran on cpu-jit")

    monkeypatch.setattr(generic, "sgd_epoch", refuse)
    seen: list[str] = []
    for name in set(RUNS.values()):
        real = getattr(epoch, name)
        monkeypatch.setattr(epoch, name,
                            lambda *a, _real=real, _name=name: seen.append(_name) or _real(*a))
    return seen


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every strategy is a candidate, whatever the machine."""
    from fastbp.devices.cpu import prefetch

    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setattr(planning, "library_threads", lambda: 2)
    monkeypatch.setenv(prefetch.ENV_VAR, "1")


def assert_same(got: list[np.ndarray], want: list[np.ndarray], **tol: float) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **(tol or {"rtol": 0, "atol": 1e-10}))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_the_techniques_compiled(strategy: str, setting: str, two_cores: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each candidate, forced, trains with the techniques in its own compiled code (more than
    one chunk of rows, a last batch of 3) and ends where ``cpu`` ends, velocities included."""
    X, labels = data(SIZES, 2103)
    want = train("cpu", SIZES, X, labels, 10, **SETTINGS[setting])
    seen = compiled_only(monkeypatch)
    monkeypatch.setenv("FASTBP_PLAN", strategy)
    got = train("cpu-jit", SIZES, X, labels, 10, **SETTINGS[setting])
    assert set(seen) == {RUNS[strategy]}
    assert_same(got, want)


@pytest.mark.parametrize("path", [p.name for p in paths.PATHS])
def test_every_suite_path_runs_the_techniques_compiled(path: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance suite's paths (batch 1 on the one-row loops among them) go through the
    compiled techniques, never the generic loop."""
    kw = SETTINGS["all"]
    with paths.forced(path) as p:
        sizes = list(p.sizes) if len(p.sizes) > 2 else [p.sizes[0], 6, *p.sizes[1:]]
        X, labels = data(sizes, p.n, seed=1)
        want = train("cpu", sizes, X, labels, p.batch_size, **kw)
        seen = compiled_only(monkeypatch)
        got = train("cpu-jit", sizes, X, labels, p.batch_size, **kw)
    assert seen
    assert_same(got, want)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_compiled_loops_run_the_techniques(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every product in the compiled loops (``SMALL_ROWS`` above the batch), batches of 7."""
    monkeypatch.setattr(jit_backend, "SMALL_ROWS", (10**9, 10**9))
    monkeypatch.setenv("FASTBP_PLAN", "one-thread")
    X, labels = data(SIZES, 60, seed=2)
    want = train("cpu", SIZES, X, labels, 7, **SETTINGS[setting])
    compiled_only(monkeypatch)
    assert_same(train("cpu-jit", SIZES, X, labels, 7, **SETTINGS[setting]), want)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_epoch_in_slices_keeps_its_masks(strategy: str, two_cores: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch trained in slices (``progress``: about 40, each starting at
    ``plan.cursor.first_step``; here of more than one chunk of rows gathered ahead) equals the
    epoch in
    one call."""
    monkeypatch.setenv("FASTBP_PLAN", strategy)
    X, labels = data(SIZES, 90_003, seed=3)
    whole = train("cpu-jit", SIZES, X, labels, 10, epochs=1, **SETTINGS["all"])
    sliced = train("cpu-jit", SIZES, X, labels, 10, epochs=1, progress=lambda *a: None,
                   **SETTINGS["all"])
    assert_same(sliced, whole, rtol=0, atol=1e-12)


def test_float32_momentum_and_dropout_equal_cpu() -> None:
    """float32 training with momentum and dropout, for a fixed seed, is ``cpu``'s to float32
    rounding: the compiled epoch draws the masks the generic loop draws."""
    sizes = [64, 30, 20, 10]
    X, labels = data(sizes, 500, seed=4)
    kw = {"momentum": 0.9, "dropout": 0.5}
    want = train("cpu", sizes, X, labels, 10, dtype="float32", **kw)
    got = train("cpu-jit", sizes, X, labels, 10, dtype="float32", **kw)
    assert all(a.dtype == np.float32 for a in got)
    # two float32 trainings, each within float32 rounding of the exact one (any BLAS library)
    terms = oracle.training_terms(sizes, 10, 500, momentum=0.9, roundings=3)
    oracle.assert_float32_close(got, want, terms, what="cpu-jit")


def test_planning_leaves_the_parameters_and_velocities_alone(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Any) -> None:
    """Planning a plan with momentum (``plan_for``, as the progress bar does before an epoch)
    trains nothing: its trials are the first epoch's own steps, run when the epoch runs."""
    monkeypatch.setenv("FASTBP_PLAN", "measure")
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path))
    n = planning.TRIAL_ROWS  # the fewest rows the planner measures
    X, labels = data(SIZES, n, seed=5)
    net = fastbp.Network(SIZES, device="cpu-jit", dtype="float64", seed=1)
    net.velocities = [np.full(p.shape, 0.01) for p in [*net.weights, *net.biases]]
    before = [np.array(a) for a in [*net.weights, *net.biases, *net.velocities]]
    plan = net.epoch_plan(X, labels, batch_size=10, eta=0.5, momentum=0.9, dropout=0.2)
    plan.start(np.random.default_rng(0).permutation(n))
    choice = net.backend.plan_for(plan)
    assert choice.source == "measuring"
    assert_same([*net.weights, *net.biases, *net.velocities], before, rtol=0, atol=0)
