"""Rows gathered ahead on a helper thread (fastbp.devices.cpu.prefetch): the same batches, the same
training, to the bit."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.devices.cpu import blas_threads, prefetch
from fastbp.devices.cpu import epoch as numpy_epoch


@pytest.fixture
def data(rng):
    xs = rng.random((1000, 13))
    ys = rng.random((1000, 3))
    return xs, ys, rng.permutation(1000)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("rows,n", [(300, 1000), (256, 1000), (2048, 1000), (7, 20)])
def test_chunks_hold_the_rows_of_the_order(data, parallel, rows, n):
    xs, ys, order = data
    order = order[:n]
    buffers = prefetch.ChunkBuffers(rows, 13, 3, xs.dtype)
    seen = 0
    for x, y in prefetch.chunks(xs, ys, order, buffers, parallel=parallel):
        r = x.shape[0]
        assert r == min(rows, n - seen) and y.shape[0] == r
        np.testing.assert_array_equal(x, xs[order[seen : seen + r]])
        np.testing.assert_array_equal(y, ys[order[seen : seen + r]])
        seen += r
    assert seen == n


def test_closing_early_waits_for_the_gather_in_flight(data):
    xs, ys, order = data
    buffers = prefetch.ChunkBuffers(100, 13, 3, xs.dtype)
    chunks = prefetch.chunks(xs, ys, order, buffers)
    next(chunks)  # chunk 0 in hand, chunk 1 being gathered into the second buffer
    chunks.close()
    np.testing.assert_array_equal(buffers.x[1], xs[order[100:200]])


def test_chunk_rows_are_whole_batches():
    assert prefetch.chunk_rows(10) == prefetch.CHUNK_ROWS // 10 * 10
    assert prefetch.chunk_rows(1000) % 1000 == 0
    assert prefetch.chunk_rows(5000) == 5000  # at least one batch


def test_mode(monkeypatch):
    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setenv(blas_threads.ENV_VAR, "1e9")
    assert prefetch.mode([784, 30, 10], 100) == "overlap"
    monkeypatch.setenv(blas_threads.ENV_VAR, "0")
    assert prefetch.mode([784, 30, 10], 100) == "parallel"
    monkeypatch.setenv(prefetch.ENV_VAR, "0")
    assert prefetch.mode([784, 30, 10], 100) is None
    monkeypatch.delenv(prefetch.ENV_VAR)
    monkeypatch.setattr(prefetch, "cores", lambda: 1)
    assert prefetch.mode([784, 30, 10], 100) is None
    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    assert prefetch.mode([784, 30, 10], 100, rows=prefetch.chunk_rows(100)) is None  # one chunk
    assert prefetch.mode([784, 30, 10], 100, rows=prefetch.chunk_rows(100) + 1) is not None


def devices():
    names = ["cpu"]
    if "cpu-jit" in fastbp.devices.backend_names():
        names.append("cpu-jit")
    return names


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_gathered_ahead_equals_training_without(device, dtype, monkeypatch, rng):
    """Three epochs, a short last batch and a short last chunk: no prefetch, the helper
    gathering ahead (one BLAS thread), and both threads gathering (threaded BLAS) agree; on
    ``cpu-jit`` the threaded case is its two-thread epoch, which adds the cost in another order
    (and may round a product differently), so there it agrees to rounding."""
    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setattr(prefetch, "CHUNK_ROWS", 64)
    monkeypatch.setattr(numpy_epoch, "DIRECT_WORK", 0)  # cpu: gather ahead at any step size
    X = rng.random((30, 203)).astype(dtype)
    Y = np.eye(10)[:, rng.integers(0, 10, 203)].astype(dtype)
    runs = []
    for gather, threshold in (("0", "1e12"), ("1", "1e12"), ("1", "0")):
        monkeypatch.setenv(prefetch.ENV_VAR, gather)
        monkeypatch.setenv(blas_threads.ENV_VAR, threshold)
        net = fastbp.Network([30, 12, 10], dtype=dtype, seed=7, device=device)
        hist = net.train(X, Y, epochs=3, batch_size=20, eta=0.3)
        runs.append((list(net.weights) + list(net.biases), [r.cost for r in hist]))
    tol = 1e-12 if dtype == "float64" else 1e-5
    for i, (params, costs) in enumerate(runs[1:]):
        exact = device == "cpu" or i == 0
        for a, b in zip(runs[0][0], params):
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        assert costs == (runs[0][1] if exact else pytest.approx(runs[0][1], rel=tol))
