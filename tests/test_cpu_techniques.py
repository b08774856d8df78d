"""The ``cpu`` device's own epoch (:mod:`fastbp.devices.cpu.epoch`) runs chapter 3's momentum,
L1 and dropout itself: with the generic loop made to fail, every path of the conformance suite
still meets the per-sample oracle, and its sample-major masks are those of
:mod:`fastbp.core.dropout`, transposed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastbp.core.epoch as generic
from fastbp.core import dropout
from fastbp.devices.cpu import epoch
from fastbp.testing import checks_techniques, oracle
from fastbp.testing.conformance import Device
from fastbp.testing.paths import PATHS, Path, forced


@pytest.fixture
def own_loop_only(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The generic epoch raises; ``calls["cpu"]`` counts the cpu loop's epochs."""
    calls = {"cpu": 0}
    real = epoch.sgd_epoch

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the generic epoch ran instead of the cpu device's own")

    def counted(backend: Any, plan: Any) -> float:
        calls["cpu"] += 1
        return real(backend, plan)

    monkeypatch.setattr(generic, "sgd_epoch", refuse)
    monkeypatch.setattr(epoch, "sgd_epoch", counted)
    return calls


@pytest.mark.parametrize("name,kw", checks_techniques.TECHNIQUES, ids=checks_techniques.IDS)
@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_cpu_loop_runs_the_techniques_on_every_path(own_loop_only: dict[str, int], path: Path,
                                                    name: str, kw: dict[str, float]) -> None:
    """Two float64 epochs with L2 and momentum, L1, dropout or all three: the cpu loop alone
    runs them and ends at the oracle's parameters (1e-10)."""
    with forced(path):
        got, want = checks_techniques._case(Device("cpu"), path, kw, "float64")
    assert own_loop_only["cpu"] == 2
    oracle.assert_parameters_close(got, want, oracle.ATOL, what=f"{path} {name}")


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_cpu_loop_runs_the_techniques_in_float32(own_loop_only: dict[str, int],
                                                 path: Path) -> None:
    """All three techniques in float32 stay within float32 rounding of the float64 oracle."""
    terms: list[float] = []
    with forced(path):
        got, want = checks_techniques._case(Device("cpu"), path,
                                            checks_techniques.TECHNIQUES[-1][1], "float32",
                                            terms=terms)
    assert own_loop_only["cpu"] == 2
    oracle.assert_float32_close(got, want, terms[0], what=f"{path} float32")


@pytest.mark.parametrize("r", [10, 3, 1])
@pytest.mark.parametrize("p", [0.5, 0.1, 0.9])
def test_sample_major_masks_are_the_core_masks_transposed(r: int, p: float) -> None:
    """Row ``c``, column ``j`` of a drawn mask is entry ``(j, c)`` of
    :func:`fastbp.core.dropout.mask` for the step's key, also for a short last batch."""
    sizes, seed, step = [4, 7, 5, 3], 2024, 17
    buffers = epoch.Techniques(sizes, 10, "float64")
    masks = buffers.draw(seed, step, p, r)
    assert [d.shape for d in masks] == [(r, 7), (r, 5)]
    for l, d in enumerate(masks):
        want = dropout.mask(dropout.step_key(seed, step, l), p, sizes[l + 1], r)
        np.testing.assert_array_equal(d, want.T)


def test_plain_training_takes_no_technique_buffers() -> None:
    """Without momentum, L1 or dropout the loop makes none of chapter 3's buffers."""
    import fastbp

    X, labels, _ = oracle.batch([6, 5, 3], 30)
    net = fastbp.Network([6, 5, 3], dtype="float64", seed=1)
    net.train(X, labels, epochs=1, batch_size=10, eta=0.5)
    from fastbp.devices.cpu.epoch import CpuCache

    cache = net._cache.of(CpuCache)
    assert cache.rows and not cache.techniques
    net.train(X, labels, epochs=1, batch_size=10, eta=0.5, momentum=0.5, dropout=0.2)
    assert cache.techniques


def test_an_epoch_in_slices_draws_the_masks_of_one_call(own_loop_only: dict[str, int]) -> None:
    """With ``progress`` the epoch runs in slices (``plan.cursor.first_step`` numbers each slice's
    first mini-batch): momentum and dropout end bit for bit where one call per epoch ends."""
    import fastbp

    sizes = [8, 6, 5, 3]
    X, labels, _ = oracle.batch(sizes, 97)
    kw = dict(epochs=2, batch_size=4, eta=0.3, momentum=0.7, dropout=0.4)
    whole = fastbp.Network(sizes, dtype="float64", seed=3)
    whole.train(X, labels, **kw)
    sliced = fastbp.Network(sizes, dtype="float64", seed=3)
    sliced.train(X, labels, progress=lambda done, total, n: None, **kw)
    assert own_loop_only["cpu"] > 4  # 25 steps an epoch, in more than one slice
    for a, b in zip(oracle.parameters(whole), oracle.parameters(sliced)):
        assert np.array_equal(a, b)
