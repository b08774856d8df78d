"""Helpers of the tests that run the CUDA backend on the NumPy stand-in
(``fastbp_fake_cupy``): a clean environment, data, one network trained on the stand-in and on
the ``cpu`` device side by side, and the CUDA benchmark script loaded as a module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from fastbp_cupy.backend import CuPyBackend
from fastbp_fake_cupy import FakeArray, install

import fastbp


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def params(net):
    return list(net.weights) + list(net.biases)


def train_pair(monkeypatch, sizes=(12, 7, 5), n=53, m=5, graphs=True, cost="quadratic",
               lmbda=0.1, epochs=2, **backend_attrs):
    """The same network trained on the stand-in GPU and on the cpu, in float64."""
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=graphs)
    for k, v in backend_attrs.items():
        setattr(be, k, v)
    X, labels = data(list(sizes), n)
    gpu = fastbp.Network(list(sizes), dtype="float64", seed=3, device=be, cost=cost)
    cpu = gpu.to("cpu")
    hg = gpu.train(X, labels, epochs=epochs, batch_size=m, eta=0.5, lmbda=lmbda,
                   test=(X, labels))
    hc = cpu.train(X, labels, epochs=epochs, batch_size=m, eta=0.5, lmbda=lmbda,
                   test=(X, labels))
    return fake, be, gpu, cpu, hg, hc


def assert_same_training(gpu, cpu, hg, hc, atol=1e-10):
    for a, b in zip(params(gpu), params(cpu)):
        assert isinstance(a, np.ndarray) and not isinstance(a, FakeArray)
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose([r.cost for r in hg], [r.cost for r in hc], rtol=1e-10)
    assert [r.correct for r in hg] == [r.correct for r in hc]


def load_speed_cuda() -> ModuleType:
    """``benchmarks/speed_cuda.py`` of this checkout as a fresh module (skips without it)."""
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "speed_cuda.py"
    if not path.exists():
        pytest.skip("benchmarks/ is not in this checkout")
    spec = importlib.util.spec_from_file_location("speed_cuda_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
