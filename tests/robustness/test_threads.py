"""Concurrent use: networks trained in different threads, or read while another trains, give the
results of sequential runs. (One ``Network`` must not be used from two threads at once; see the
``Network`` docstring. ``use_device`` per thread is tested in ``tests/test_devices.py``.)"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
import pytest

import fastbp

SIZES = [100, 40, 10]
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((SIZES[0], 2000)), rng.integers(0, SIZES[-1], 2000)


def train(net: fastbp.Network, data) -> fastbp.History:
    return net.train(*data, epochs=3, batch_size=10, eta=0.5, test=data)


def in_threads(*jobs: Callable[[], Any]) -> list[Any]:
    """Run the jobs in threads started together; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def assert_same(a: fastbp.Network, b: fastbp.Network, ha=None, hb=None) -> None:
    for x, y in zip([*a.weights, *a.biases], [*b.weights, *b.biases]):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=0)
    if ha is not None:
        assert [r.correct for r in ha] == [r.correct for r in hb]
        np.testing.assert_allclose([r.cost for r in ha], [r.cost for r in hb], rtol=1e-10)


@pytest.mark.parametrize("backend", ["own", "shared instance"])
def test_networks_trained_in_threads_match_sequential_runs(data, backend: str) -> None:
    def make() -> list[fastbp.Network]:
        device = fastbp.NumpyBackend(dtype="float64") if backend != "own" else None
        return [fastbp.Network(SIZES, seed=s, dtype="float64", device=device) for s in SEEDS]

    sequential = make()
    seq_histories = [train(net, data) for net in sequential]
    concurrent = make()
    histories = in_threads(*[lambda net=net: train(net, data) for net in concurrent])
    for a, b, ha, hb in zip(sequential, concurrent, seq_histories, histories):
        assert_same(a, b, ha, hb)


def test_reading_one_network_while_another_trains(data) -> None:
    reader = fastbp.Network(SIZES, seed=7, dtype="float64")
    train(reader, data)
    X, labels = data
    expected = (reader.feedforward(X[:, :500]), reader.weights[0], reader.accuracy(X, labels))
    trained_alone = fastbp.Network(SIZES, seed=8, dtype="float64")
    alone = train(trained_alone, data)
    trainee = fastbp.Network(SIZES, seed=8, dtype="float64")
    done = threading.Event()
    reads = []

    def read() -> int:
        while not done.is_set() or not reads:
            out = reader.feedforward(X[:, :500])
            np.testing.assert_array_equal(out, expected[0])
            np.testing.assert_array_equal(reader.weights[0], expected[1])
            assert reader.accuracy(X, labels) == expected[2]
            reads.append(1)
        return len(reads)

    def learn() -> fastbp.History:
        try:
            return train(trainee, data)
        finally:
            done.set()

    n_reads, history = in_threads(read, learn)
    assert n_reads >= 1
    assert_same(trained_alone, trainee, alone, history)


def test_the_cross_entropy_path_in_threads(data) -> None:
    """Costs other than the quadratic go through ``output_error``: the same in threads."""
    def make(seed: int) -> fastbp.Network:
        return fastbp.Network(SIZES, seed=seed, dtype="float64", cost="cross-entropy")

    sequential = [make(s) for s in SEEDS[:2]]
    for net in sequential:
        train(net, data)
    concurrent = [make(s) for s in SEEDS[:2]]
    in_threads(*[lambda net=net: train(net, data) for net in concurrent])
    for a, b in zip(sequential, concurrent):
        assert_same(a, b)


def test_a_shared_cpu_instance_gives_each_thread_its_own_product_buffers() -> None:
    """``matmul_nt``'s kept work buffers are per thread, so networks sharing one ``cpu``
    instance in different threads never write into each other's; and both products are right."""
    be = fastbp.NumpyBackend(dtype="float64")
    rng = np.random.default_rng(0)
    a, b = rng.random((10, 4096)), rng.random((30, 4096))
    got: dict[str, object] = {}

    def run(name: str) -> None:
        out = np.empty((10, 30))
        got[name] = (be.matmul_nt(a, b, out=out).copy(),
                     be._scratch("nt-block", (10, 30), np.dtype("float64")))

    threads = [threading.Thread(target=run, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (first, buf1), (second, buf2) = got["first"], got["second"]
    assert buf1 is not buf2
    want = a @ b.T
    for product in (first, second):
        np.testing.assert_allclose(product, want, rtol=1e-12)
