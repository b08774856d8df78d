"""The eager step's launches from Python, on the CuPy stand-in: cuBLAS for the products only (the
bias updates by the raw ``fastbp_bias_update``, the gather by the raw ``fastbp_gather``, never
``take``), each raw kernel's arguments built once, and the results the cpu device's, also when
a schedule changes ``η`` between epochs (the bias launches follow ``α = η/m``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp

pytest.importorskip("fastbp_cupy")
from fastbp_cupy import CuPyBackend  # noqa: E402
from fastbp_fake_cupy import install  # noqa: E402

SIZES = [12, 7, 6, 5]
L = len(SIZES) - 1


def data(n=53, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


class Halving:
    """A schedule that halves ``η`` after every epoch."""

    def begin(self, eta: float) -> float:
        self.eta = eta
        return eta

    def __call__(self, record, net) -> bool:
        self.eta /= 2
        return True


def pair(monkeypatch, **train):
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=False)
    X, labels = data()
    gpu = fastbp.Network(SIZES, dtype="float64", seed=3, device=be)
    cpu = gpu.to("cpu")
    kw = dict(epochs=3, batch_size=5, eta=0.5, lmbda=0.1, test=(X, labels), **train)
    hg = gpu.train(X, labels, schedule=Halving(), **kw)
    hc = cpu.train(X, labels, schedule=Halving(), **kw)
    return fake, be, gpu, cpu, hg, hc


@pytest.mark.parametrize("train", [{}, {"momentum": 0.8, "dropout": 0.3}, {"dropout": 0.3},
                                   {"l1": 0.5}], ids=["plain", "momentum+dropout", "dropout",
                                                      "l1"])
def test_the_eager_step_with_a_schedule_equals_the_cpu(monkeypatch, train):
    fake, be, gpu, cpu, hg, hc = pair(monkeypatch, **train)
    assert be.last_epoch_path == "eager"
    for a, b in zip([*gpu.weights, *gpu.biases], [*cpu.weights, *cpu.biases]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-10)
    np.testing.assert_allclose([r.cost for r in hg], [r.cost for r in hc], rtol=1e-10)


@pytest.mark.parametrize("train,raw", [({}, 2 + L), ({"momentum": 0.8, "dropout": 0.3},
                                                     2 + (L - 1) + 2 * L)],
                         ids=["plain", "momentum+dropout"])
def test_an_eager_step_calls_cublas_for_the_products_only(monkeypatch, train, raw):
    """Per step: 3L − 1 GEMMs (feedforward, BP2, the weight update), the gather, BP1 and the
    bias steps as raw kernels (with dropout a mask per hidden layer; with momentum the weights'
    velocity step), no ``take``."""
    fake = install(monkeypatch)
    be = CuPyBackend(dtype="float64", graphs=False)
    net = fastbp.Network(SIZES, dtype="float64", seed=3, device=be)
    X, labels = data(n=50)
    from fastbp.core.epoch import run_epoch

    plan = net.epoch_plan(X, labels, batch_size=5, eta=0.5, **train)
    with be.activate():
        plan.start(be.index_array(np.arange(50)))
        run_epoch(be, plan)
        before = dict(fake.calls)
        run_epoch(be, plan)
    per_step = {k: (fake.calls.get(k, 0) - before.get(k, 0)) / 10
                for k in ("gemm", "raw", "take")}
    assert per_step == {"gemm": 3 * L - 1, "raw": raw, "take": 0}, per_step
