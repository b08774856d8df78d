"""cpu-jit's backprop of a layer stack in two halves of the batch on two cores
(fastbp_numba.halves): the one-matrix sums to rounding, the same numbers on every run, taken
only where it pays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import halves  # noqa: E402

from fastbp.core import dropout  # noqa: E402
from fastbp.core.layers import ConvPool, FullyConnected, Softmax, Stack  # noqa: E402
from fastbp.devices.registry import resolve  # noqa: E402


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(halves, "cores", lambda: 2)
    monkeypatch.setattr(halves, "library_threads", lambda: 2)


def _stack(dtype):
    backend = resolve("cpu-jit", dtype)
    layers = [ConvPool((3, 2, 3, 3), (2, 9, 8), (2, 2), "relu"),
              FullyConnected(3 * 3 * 3, 7, "tanh", p_dropout=0.3),
              Softmax(7, 4, p_dropout=0.2)]
    rng = np.random.default_rng(11)
    params = [tuple(backend.asarray(rng.normal(size=s) * 0.5) for s in layer.param_shapes())
              for layer in layers]
    return backend, layers, params


def _batch(backend, m, rng):
    x = backend.asarray(rng.normal(size=(2 * 9 * 8, m)))
    y = backend.asarray(np.eye(4)[:, rng.integers(0, 4, m)])
    return x, y


def _masks(backend, layers, m):
    out = []
    for l, layer in enumerate(layers):
        if not layer.p_dropout:
            out.append(None)
            continue
        d = backend.empty((int(np.prod(layer.in_shape)), m))
        backend.dropout_mask(dropout.step_key(5, 0, l), layer.p_dropout, d)
        out.append(np.sign(d))
    return out


@pytest.mark.parametrize("m", [halves.MIN_BATCH, halves.MIN_BATCH + 7])
def test_halves_give_the_one_matrix_sums(two_cores, m):
    backend, layers, params = _stack("float64")
    x, y = _batch(backend, m, np.random.default_rng(m))
    masks = _masks(backend, layers, m)
    split = Stack(backend, layers)
    cost, grads = split.backprop(params, x, y, masks)
    assert split in halves._twins  # the second half ran on a twin's buffers
    whole_cost, whole = Stack(backend, layers).backprop_here(params, x, y, masks)
    assert float(cost) == pytest.approx(float(whole_cost), rel=1e-12)
    for (gw, gb), (ww, wb) in zip(grads, whole):
        np.testing.assert_allclose(gw, ww, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(gb, wb, rtol=1e-11, atol=1e-11)


def test_the_same_numbers_on_every_run(two_cores):
    backend, layers, params = _stack("float32")
    x, y = _batch(backend, 64, np.random.default_rng(3))
    runs = []
    for _ in range(3):
        cost, grads = Stack(backend, layers).backprop(params, x, y)
        runs.append((float(cost), [np.array(g) for pair in grads for g in pair]))
    for cost, grads in runs[1:]:
        assert cost == runs[0][0]
        for a, b in zip(grads, runs[0][1]):
            np.testing.assert_array_equal(a, b)


def test_taken_on_two_cores_from_the_smallest_batch_that_pays(monkeypatch):
    monkeypatch.setattr(halves, "library_threads", lambda: 2)
    monkeypatch.setattr(halves, "cores", lambda: 2)
    assert halves.takes(halves.MIN_BATCH) and not halves.takes(halves.MIN_BATCH - 1)
    monkeypatch.setattr(halves, "cores", lambda: 1)
    assert not halves.takes(100)
    monkeypatch.setattr(halves, "cores", lambda: 2)
    monkeypatch.setattr(halves, "library_threads", lambda: 1)  # BLAS held to one thread
    assert not halves.takes(100)
