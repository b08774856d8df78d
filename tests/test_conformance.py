"""The built-in ``cpu`` device runs the conformance suite (:mod:`fastbp.testing`), and so does
the smallest device a third party could write (the ``Backend`` base class on NumPy, nothing
overridden); each of the suite's paths reaches the cpu code it is named for."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.devices import registry
from fastbp.devices.cpu import cblas, epoch, prefetch
from fastbp.testing import conformance, oracle, paths


class MinimalBackend(fastbp.Backend):
    """A device as a third party's first one: NumPy through the ``Backend`` base class alone."""

    name = "numpy-minimal"

    def __init__(self, dtype: str = "float32", index: int = 0) -> None:
        super().__init__(np, dtype=dtype, index=index)


def register_minimal(monkeypatch: pytest.MonkeyPatch) -> None:
    """``numpy-minimal`` registered for one test."""
    monkeypatch.setitem(registry._registered, MinimalBackend.name, MinimalBackend)


conformance.install(globals(), device=["cpu", "numpy-minimal"], setup=register_minimal)


@pytest.mark.parametrize("path,gathering,big,threads", [
    ("one-row", "each batch", False, False),
    ("small", "each batch", False, False),
    ("vectorised", None, True, False),
    ("gather-ahead", "overlap", True, False),
    ("two-threads", "parallel", True, True),
])
def test_each_suite_path_runs_its_code(path, gathering, big, threads, monkeypatch):
    """Under the suite's settings of each path, the cpu epoch gathers as the path says, calls
    BLAS directly and runs the vectorised σ exactly on the large steps, and threads BLAS only
    on the threaded path."""
    seen = {"gathering": "each batch", "direct": False, "simd": False, "threads": None}
    real_mode, real_sigmoid, real_threads = prefetch.mode, epoch.sigmoid, epoch.step_threads

    def mode(*args, **kwargs):
        seen["gathering"] = real_mode(*args, **kwargs)
        return seen["gathering"]

    def sigmoid(z):
        seen["simd"] |= z.size >= epoch.SIMD_SIGMOID
        return real_sigmoid(z)

    def step_threads(sizes, m, on=None):
        seen["threads"] = on
        return real_threads(sizes, m, on)

    class Direct(cblas.FortranGemm):
        def __init__(self, *args):
            seen["direct"] = True
            super().__init__(*args)

    monkeypatch.setattr(prefetch, "mode", mode)
    monkeypatch.setattr(epoch, "sigmoid", sigmoid)
    monkeypatch.setattr(epoch, "step_threads", step_threads)
    monkeypatch.setattr(cblas, "FortranGemm", Direct)
    with paths.forced(path) as p:
        X, labels, _ = oracle.batch(p.sizes, p.n)
        net = fastbp.Network(list(p.sizes), dtype="float64", seed=1)
        history = net.train(X, labels, epochs=1, batch_size=p.batch_size, eta=0.5)
    assert np.isfinite(history[0].cost)
    direct = big and cblas.find() is not None
    assert seen == {"gathering": gathering, "direct": direct, "simd": big, "threads": threads}
