"""Every neuron and cost of the ``cuda`` device on a real GPU, in float64 against the cpu device:
tanh and relu hidden layers (GEMM epilogue modes 3, 4, 6, 7 in the graph; the ``bias_tanh``,
``bias_relu``, ``mul_tanh_prime``, ``mul_relu_prime`` kernels eager), the softmax output with the
log-likelihood (mode 5, ``fastbp_softmax_columns``, output-error kind 2), each with momentum, L1
and dropout (mode 8, the dropout kernels' f' of tanh and relu), graphs on and off, at the largest
captured batch (m = 128), and a dropout layer larger than one pass of its kernels' grid.

Run with ``pytest -m gpu``; skipped without CuPy or a GPU, and run on the NumPy stand-in by
``benchmarks/gpu/check.sh --dry-run`` (which checks the tests, not the GPU). Float64 runs are held
to 1e-10 relative to the cpu device (see ``test_cupy_gpu.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cupy_gpu import F64_TOL, STAND_IN, WHY_NOT, cp, data, params, rel, samples

import fastbp

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cp is None, reason=WHY_NOT)]

if cp is not None:
    from fastbp_cupy import CuPyBackend
    from fastbp_cupy import kernels as K

TECHNIQUES = {"plain": {}, "momentum": {"momentum": 0.9}, "l1": {"l1": 2.0},
              "dropout": {"dropout": 0.5}, "all": {"momentum": 0.6, "l1": 1.0, "dropout": 0.3}}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS"):
        monkeypatch.delenv(var, raising=False)


def pair(sizes, activation, cost, graphs, seed=3):
    """A float64 network on the GPU and its twin on the cpu: same parameters, same generator."""
    be = CuPyBackend(dtype="float64", graphs=graphs)
    gpu = fastbp.Network(sizes, dtype="float64", seed=seed, device=be, cost=cost,
                         activation=activation)
    cpu = fastbp.Network(sizes, dtype="float64", seed=seed, device="cpu", cost=cost,
                         activation=activation)
    cpu.weights = [np.asarray(w) for w in gpu.weights]
    cpu.biases = [np.asarray(b) for b in gpu.biases]
    cpu.rng.bit_generator.state = gpu.rng.bit_generator.state
    return gpu, cpu


def train_alike(gpu, cpu, X, labels, **train):
    hg = gpu.train(X, labels, **train)
    hc = cpu.train(X, labels, **train)
    be = gpu.backend
    assert be.graph_error is None and be.raw_error is None, (be.graph_error, be.raw_error)
    assert rel(params(gpu), params(cpu)) <= F64_TOL
    if cpu.velocities is not None:
        assert rel(list(gpu.velocities), list(cpu.velocities)) <= F64_TOL
    assert rel([r.cost for r in hg], [r.cost for r in hc]) <= F64_TOL
    assert [r.correct for r in hg] == [r.correct for r in hc]


@pytest.mark.parametrize("graphs", [True, False], ids=["graph", "eager"])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy", "log-likelihood"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("sizes,m", [([784, 30, 10], 10), ([50, 40, 30, 10], 128)])
def test_every_neuron_and_cost_equals_numpy_in_float64(graphs, cost, activation, sizes, m):
    """tanh and relu hidden layers under each output (sigmoid, or softmax with the
    log-likelihood), with L2 and a last partial batch; m = 128 is the largest captured batch."""
    X, labels = data(sizes, samples(3 * m + 17 if m > 10 else 503))
    gpu, cpu = pair(sizes, activation, cost, graphs)
    train_alike(gpu, cpu, X, labels, epochs=2, batch_size=m, eta=0.05, lmbda=0.5,
                test=(X, labels))
    assert gpu.backend.last_epoch_path == ("graph" if graphs else "eager")


@pytest.mark.parametrize("graphs", [True, False], ids=["graph", "eager"])
@pytest.mark.parametrize("name", [k for k in TECHNIQUES if k != "plain"])
@pytest.mark.parametrize("activation,cost", [("tanh", "log-likelihood"),
                                             ("relu", "log-likelihood"),
                                             ("relu", "cross-entropy")])
def test_techniques_on_every_neuron_equal_numpy_in_float64(graphs, name, activation, cost):
    """Momentum, L1 and dropout with tanh and relu hidden layers (the dropout kernels' f' of
    each) and the softmax output, graphs on and off."""
    sizes, m = [60, 30, 20, 10], 10
    X, labels = data(sizes, samples(303))
    gpu, cpu = pair(sizes, activation, cost, graphs)
    train_alike(gpu, cpu, X, labels, epochs=2, batch_size=m, eta=0.05, lmbda=0.5,
                **TECHNIQUES[name])
    assert gpu.backend.last_epoch_path == ("graph" if graphs else "eager")


@pytest.mark.parametrize("graphs", [True, False], ids=["graph", "eager"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_dropout_larger_than_one_grid_pass(graphs, activation):
    """A hidden layer of ``n m`` > one pass of the dropout kernels' grid (``ELEMENT_MAX_BLOCKS``
    blocks of ``ELEMENT_THREADS``), so their grid-stride loop takes a second pass, captured at
    m = 128 and eager, with momentum."""
    hidden = K.ELEMENT_MAX_BLOCKS * K.ELEMENT_THREADS // 128 + 53
    sizes, m = [12, hidden, 10], 128
    assert hidden * m > K.ELEMENT_MAX_BLOCKS * K.ELEMENT_THREADS
    X, labels = data(sizes, 2 * m + 5 if STAND_IN else 4 * m + 5)
    gpu, cpu = pair(sizes, activation, "log-likelihood", graphs)
    train_alike(gpu, cpu, X, labels, epochs=1, batch_size=m, eta=0.05, momentum=0.5,
                dropout=0.5)
    assert gpu.backend.last_epoch_path == ("graph" if graphs else "eager")
