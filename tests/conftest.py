"""Shared fixtures: MNIST from ``$FASTBP_DATA`` or ``../shared/data/mnist`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def mnist_dir() -> Path | None:
    env = os.environ.get("FASTBP_DATA")
    for d in (Path(env) if env else None, SHARED):
        if d is not None and (d / "train-images-idx3-ubyte.gz").exists():
            return d
    return None


@pytest.fixture(autouse=True)
def cpu_device_unless_asked(monkeypatch):
    """These tests exercise the built-in ``cpu`` device unless they name another: without a
    device the default is ``auto`` (the compiled ``cpu-jit`` here), which has tests of its own
    (``test_default_device.py``), and every device runs the conformance suite."""
    if not os.environ.get("FASTBP_DEVICE"):
        monkeypatch.setenv("FASTBP_DEVICE", "cpu")


@pytest.fixture
def data_dir(monkeypatch) -> str:
    """The MNIST folder, also as ``$FASTBP_DATA`` for the test (skipped without MNIST); a test
    module may define its own."""
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    monkeypatch.setenv("FASTBP_DATA", str(d))
    return str(d)


@pytest.fixture(scope="session")
def mnist():
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    from fastbp.datasets import load_mnist

    return load_mnist(d, download=False)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_batch(rng, sizes, m, dtype="float64"):
    """A random batch ``X (n_in, m)`` in [0, 1] and one-hot ``Y (n_out, m)``."""
    X = rng.random((sizes[0], m)).astype(dtype)
    Y = np.zeros((sizes[-1], m), dtype=dtype)
    Y[rng.integers(0, sizes[-1], m), np.arange(m)] = 1.0
    return X, Y


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """Planning on (as a user has it), a fresh cache folder, a quiet machine; the cache file."""
    from fastbp.devices import planner

    monkeypatch.setenv("FASTBP_PLAN", "auto")
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path))
    monkeypatch.setattr(planner, "busy_machine", lambda: False)
    monkeypatch.setattr(planner, "busy_since", lambda mark: False)
    planner._warned.clear()
    return tmp_path / "plans.json"
