"""The ``cpu-jit`` device: the conformance suite (every path of its compiled epoch against the
per-sample oracle), and what is its own: the compiled gradient, each BLAS, the threads."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import NumbaBackend, planning  # noqa: E402
from fastbp_numba import backend as jit_backend  # noqa: E402

import fastbp  # noqa: E402
from fastbp.core import reference  # noqa: E402
from fastbp.devices import registry as devices  # noqa: E402
from fastbp.testing import conformance, oracle, paths  # noqa: E402

conformance.install(globals(), device="cpu-jit")

SHAPES = [[6, 4], [10, 9, 7, 5, 3]]  # 1 and 4 layers
COSTS = [fastbp.QuadraticCost, fastbp.CrossEntropyCost]
# SMALL_ROWS values that send every product to the compiled loops, or every one to BLAS
PATHS = {"loops": (10**9, 10**9), "blas": (0, 0)}


def batch(rng, sizes, m, dtype="float64"):
    X = rng.random((sizes[0], m)).astype(dtype)
    Y = np.zeros((sizes[-1], m), dtype=dtype)
    Y[rng.integers(0, sizes[-1], m), np.arange(m)] = 1.0
    return X, Y


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    monkeypatch.setattr(jit_backend, "SMALL_ROWS", PATHS[request.param])
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(99)


@pytest.fixture
def two_threads(monkeypatch):
    """Every epoch on the kernels' two threads, whatever the machine and the step size."""
    from fastbp.devices.cpu import blas_threads, prefetch

    monkeypatch.setenv(blas_threads.ENV_VAR, "0")
    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setattr(planning, "library_threads", lambda: 2)


def test_device_is_registered_by_its_entry_point():
    assert "cpu-jit" in devices.backend_names()
    net = fastbp.Network([4, 3, 2], device="cpu-jit")
    assert isinstance(net.backend, NumbaBackend)
    assert net.device == "cpu-jit"
    info = net.backend.describe()
    assert info["numba"] and info["blas"]


@pytest.mark.parametrize("sizes", SHAPES)
@pytest.mark.parametrize("m", [1, 7])
@pytest.mark.parametrize("cost", COSTS)
def test_compiled_backprop_matches_per_sample_loop(sizes, m, cost, path, rng):
    """The kernels' gradient on both of their forms, also the compiled loops on batches > 1
    (a form the epoch takes only at batch 1)."""
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=3, device="cpu-jit")
    X, Y = batch(rng, sizes, m)
    W, B = list(net.weights), list(net.biases)
    nb, nw = net.backend.compiled_backprop(W, B, X, Y, cost)
    rb, rw = reference.backprop_loop(W, B, X, Y, cost)
    for got, want in zip(nb + nw, rb + rw):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", ["dots", "dots_fours"])
def test_feedforward_dot_products_within_rounding_bounds(dtype, form, rng):
    """``kernels.dots`` and ``kernels.dots_fours`` (the feedforward at few rows): every entry of
    ``A Wᵀ + bᵀ`` within the bound of a sum of ``k + 1`` products in any order,
    ``γ_{k+1} (Σ_p |a_ip w_jp| + |b_j|)``, for every block shape: fours of rows by threes of
    neurons and the last neuron or two, pairs of rows by fours of neurons, an odd row, the last
    neurons; the rows past ``r`` untouched."""
    from fastbp_numba import kernels

    products = getattr(kernels, form)
    u = np.finfo(dtype).eps / 2
    for k in (1, 3, 17, 64):
        for n in range(1, 10):
            for r in range(1, 10):
                w = (rng.random((n, k)) - 0.5).astype(dtype)
                b = (rng.random((n, 1)) - 0.5).astype(dtype)
                a = (rng.random((r + 2, k)) - 0.5).astype(dtype)  # rows past r stay untouched
                z = np.full((r + 2, n), 7.0, dtype)
                products(w, b, a, r, z)
                w64, a64, b64 = (v.astype(np.float64) for v in (w, a[:r], b))
                exact = a64 @ w64.T + b64.T
                size = np.abs(a64) @ np.abs(w64).T + np.abs(b64).T
                gamma = (k + 1) * u / (1 - (k + 1) * u)
                assert np.all(np.abs(z[:r] - exact) <= gamma * size), (k, n, r)
                assert np.all(z[r:] == 7.0)


def compiled_gradient(net, scale=1.0):
    """``net`` with its ``backprop`` replaced by the compiled kernels' (for ``fastbp.gradcheck``);
    ``scale`` ≠ 1 spoils the weight gradient."""

    def backprop(x, y):
        nb, nw = net.backend.compiled_backprop(list(net.weights), list(net.biases), x, y,
                                               net.cost)
        return nb, [g * scale for g in nw]

    net.backprop = backprop
    return net


@pytest.mark.parametrize("cost", COSTS)
def test_compiled_gradient_passes_gradcheck(cost, path, rng):
    sizes = [7, 6, 5, 4]
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=1, device="cpu-jit")
    X, Y = batch(rng, sizes, 9)
    assert fastbp.gradcheck(compiled_gradient(net), X, Y) < 1e-6


def test_gradcheck_catches_a_broken_compiled_gradient(rng):
    net = fastbp.Network([5, 4, 3], dtype="float64", seed=1, device="cpu-jit")
    X, Y = batch(rng, [5, 4, 3], 4)
    assert fastbp.gradcheck(compiled_gradient(net, scale=1.01), X, Y) > 1e-3


def test_same_seed_same_history(rng):
    X, Y = batch(rng, [16, 8, 4], 64, "float32")
    runs = [fastbp.Network([16, 8, 4], seed=11, device="cpu-jit").train(
        X, Y, epochs=2, batch_size=10, eta=1.0) for _ in range(2)]
    assert [r.cost for r in runs[0]] == [r.cost for r in runs[1]]


def test_learns_mnist_shaped_data(rng):
    """A separable problem of MNIST's shape is learnt in a few epochs (float32, batch 10)."""
    centres = rng.random((784, 10)).astype("float32")
    labels = rng.integers(0, 10, 2000)
    X = np.clip(centres[:, labels] + 0.3 * rng.standard_normal((784, 2000)), 0, 1)
    net = fastbp.Network([784, 30, 10], seed=0, device="cpu-jit")
    hist = net.train(X.astype("float32"), labels, epochs=3, batch_size=10, eta=3.0,
                     test=(X[:, :500].astype("float32"), labels[:500]))
    assert hist[-1].accuracy > 0.9


def test_other_costs_run_the_cpu_loop(rng, caplog):
    class HalfQuadratic(fastbp.QuadraticCost):
        """The quadratic cost under another name: not one the kernels compile."""

    X, Y = batch(rng, [6, 5, 3], 20)
    nets = [fastbp.Network([6, 5, 3], cost=c, dtype="float64", seed=2, device=d)
            for c, d in ((fastbp.QuadraticCost, "cpu"), (HalfQuadratic, "cpu-jit"))]
    for n in nets:
        n.train(X, Y, epochs=1, batch_size=4, eta=0.5, shuffle=False)
    np.testing.assert_allclose(nets[1].weights[0], nets[0].weights[0], atol=1e-12)
    assert "runs the cpu device's loop" in caplog.text
    plan = nets[1].epoch_plan(X, Y, batch_size=4, eta=0.5)  # nothing compiled to plan for it
    assert nets[1].backend.plan_for(plan).name == "generic"


@pytest.mark.parametrize("kwargs,match", [({"dtype": "float16"}, "float16"),
                                          ({"index": 1}, "one device")])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(fastbp.FastbpError, match=match):
        NumbaBackend(**kwargs)


def test_networks_sharing_a_backend_train_in_threads(rng):
    """The compiled epoch releases the GIL and keeps its buffers in each network's workspaces:
    two networks on one backend instance, trained at once in two threads, end as if in turn."""
    shared = NumbaBackend("float64")
    X, Y = batch(rng, [12, 8, 4], 300)
    assert_threads_train_as_in_turn(shared, X, Y, epochs=3, batch_size=5, eta=0.5)


def assert_threads_train_as_in_turn(device, X, Y, **train):
    """Two networks trained at once in two threads end as the same two trained in turn."""
    import threading

    def make():
        return [fastbp.Network([12, 8, 4], dtype="float64", seed=s, device=device)
                for s in (1, 2)]

    alone = make()
    for net in alone:
        net.train(X, Y, **train)
    together = make()
    threads = [threading.Thread(target=n.train, args=(X, Y), kwargs=train) for n in together]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        for wa, wb in zip(list(a.weights) + list(a.biases), list(b.weights) + list(b.biases)):
            np.testing.assert_array_equal(wa, wb)


@pytest.fixture(params=["mkl", "openblas", "scipy"])
def library(request, monkeypatch):
    """Each BLAS the kernels can call: MKL, NumPy's OpenBLAS (function pointers) or SciPy's."""
    from fastbp.devices.cpu import cblas

    if request.param != "scipy" and cblas._load(request.param) is None:
        pytest.skip(f"{request.param} is not installed here")
    monkeypatch.setenv(cblas.ENV_VAR, request.param)
    return request.param


def assert_epoch_is_the_oracles(rng, cost, batch_size, n, lmbda=2.0):
    """One unshuffled float64 epoch with L2 on ``cpu-jit`` equals the per-sample oracle's."""
    sizes = [20, 8, 6, 5]
    X, Y = batch(rng, sizes, n)
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=5, device="cpu-jit")
    start = oracle.parameters(net)
    hist = net.train(X, Y, epochs=1, batch_size=batch_size, eta=0.5, lmbda=lmbda, shuffle=False)
    want, total = oracle.reference_epoch(start, X, Y, batch_size, 0.5, cost, np.arange(n), lmbda)
    oracle.assert_parameters_close(oracle.parameters(net), want, oracle.ATOL)
    assert hist[0].cost == pytest.approx(total / n, rel=oracle.COST_RTOL)


@pytest.mark.parametrize("cost", COSTS)
def test_compiled_epoch_on_each_blas_matches_reference_sgd(library, cost, monkeypatch, rng):
    monkeypatch.setattr(jit_backend, "SMALL_ROWS", (0, 0))  # every product through BLAS
    assert_epoch_is_the_oracles(rng, cost, 7, 50)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("batch_size,n", [(2, 9), (7, 50), (20, 43)])
def test_two_thread_epoch_matches_reference_sgd(library, cost, batch_size, n, two_threads,
                                                monkeypatch, rng):
    """The epoch split over two threads (each half of every batch, then half of every layer's
    units) is the book's SGD on every BLAS the kernels can call, for odd batches and a last
    batch of 3 (43 = 2·20 + 3) that leaves the second thread no rows."""
    calls = []
    real = jit_backend.NumbaBackend._two_threads
    monkeypatch.setattr(jit_backend.NumbaBackend, "_two_threads",
                        lambda self, *a: calls.append(1) or real(self, *a))
    assert_epoch_is_the_oracles(rng, cost, batch_size, n)
    assert calls, "the two-thread epoch did not run"


def spy_blocks(monkeypatch, rows):
    """``BLOCK_ROWS`` set to ``rows``; the ``(block, sums)`` each epoch of the test gets."""
    monkeypatch.setattr(jit_backend, "BLOCK_ROWS", rows)
    seen = []
    real = jit_backend.NumbaBackend._blocks
    monkeypatch.setattr(jit_backend.NumbaBackend, "_blocks",
                        lambda self, *a: seen.append(real(self, *a)) or seen[-1])
    return seen


def summed(sums) -> bool:
    """Whether a thread's sums hold a batch's gradient (they are written by blocks alone)."""
    grads, gbs = sums
    return all(np.abs(g).sum() > 0 for g in (*grads, *gbs))


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("plan,batch_size,n,second", [
    ("one-thread", 7, 50, False), ("one-thread", 20, 43, False), ("two-threads", 20, 40, True),
    ("two-threads", 20, 43, False), ("two-threads", 9, 50, False)])
def test_a_batch_in_blocks_of_rows_is_the_books_sgd(library, cost, plan, batch_size, n, second,
                                                     monkeypatch, rng):
    """A batch of more rows than ``BLOCK_ROWS`` (3 here) runs in blocks, each block's BP3 and
    BP4 added to the batch's sums, then one step from them (two threads: each its own rows in
    blocks, then the step from both threads' sums, split by units): the book's SGD, with the
    last batch shorter (43 = 2·20 + 3, 50 = 5·9 + 5: a last batch that leaves the second thread
    no rows, and its sums 0; ``second``: the second thread's sums hold the last batch's)."""
    if plan == "two-threads" and not any(c.startswith("two-threads/") for c in
                                         planning.candidates([20, 8, 6, 5], batch_size, n)):
        pytest.skip("two threads cannot run here")
    seen = spy_blocks(monkeypatch, 3)
    monkeypatch.setenv("FASTBP_PLAN", plan)
    assert_epoch_is_the_oracles(rng, cost, batch_size, n)
    block, sums = seen[-1]
    assert block == 3 and summed(sums[0])
    assert summed(sums[1]) == second
    if plan == "two-threads" and not second:
        assert all(not np.any(a) for part in sums[1] for a in part)


@pytest.mark.parametrize("cost", COSTS)
def test_rows_gathered_ahead_in_blocks_are_the_books_sgd(cost, monkeypatch, rng):
    """``overlap`` (rows gathered ahead in chunks, :func:`fastbp_numba.epoch.sgd_rows`) takes a
    batch of 100 in blocks of 30, 30, 30 and 10: the book's SGD over 2103 samples."""
    monkeypatch.setenv("FASTBP_PLAN", "overlap")
    monkeypatch.setenv("FASTBP_PREFETCH", "1")
    if not any(c.startswith("overlap/") for c in planning.candidates([20, 8, 6, 5], 100, 2103)):
        pytest.skip("rows are not gathered ahead here (one core)")
    seen = spy_blocks(monkeypatch, 30)
    assert_epoch_is_the_oracles(rng, cost, 100, 2103)
    assert seen[-1][0] == 30 and summed(seen[-1][1][0])


def test_a_wide_network_runs_its_batches_whole():
    """Blocks are for narrow networks: a network of :data:`BLOCKED_WEIGHTS` weights or more
    streams its large products whole (and keeps no sums)."""
    backend = jit_backend.NumbaBackend()
    block, sums = backend._blocks([784, 30, 10], {})
    assert block == jit_backend.BLOCK_ROWS and sums[0][0][0].shape == (30, 784)
    block, sums = backend._blocks([784, 1024, 1024, 10], {})
    assert block > 10**9 and all(g.size == 0 for pair in sums for part in pair for g in part)


def test_one_row_steps_are_not_split_between_two_threads(two_threads):
    """A step of one row has no halves: ``two-threads`` is no candidate at batch 1 (timed
    there, its second thread only waits: a tenth of the others' speed, and most of the
    planning time), at batch 2 it is."""
    assert not any(c.startswith("two-threads/") for c in planning.candidates([6, 4], 1, 9))
    assert any(c.startswith("two-threads/") for c in planning.candidates([6, 4], 2, 9))


@pytest.mark.parametrize("path,runs", [("one-row", "one call"), ("small", "one call"),
                                       ("vectorised", "one call"),
                                       ("gather-ahead", "rows gathered ahead"),
                                       ("two-threads", "two threads")])
def test_each_suite_path_runs_its_code(path, runs, monkeypatch, rng):
    """The conformance suite's settings of each path send the epoch where the path says."""
    from fastbp.devices.cpu import prefetch

    seen = []
    for name, target, attr in (("two threads", jit_backend.NumbaBackend, "_two_threads"),
                               ("rows gathered ahead", prefetch, "chunks")):
        real = getattr(target, attr)
        monkeypatch.setattr(target, attr,
                            lambda *a, _real=real, _name=name, **k: seen.append(_name)
                            or _real(*a, **k))
    with paths.forced(path) as p:
        X, Y = batch(rng, list(p.sizes), p.n)
        net = fastbp.Network(list(p.sizes), dtype="float64", device="cpu-jit")
        net.train(X, Y, epochs=1, batch_size=p.batch_size, eta=0.5)
    assert set(seen) == ({runs} - {"one call"}), seen


def test_one_blas_thread_set_by_the_user_keeps_the_epoch_on_one_thread(monkeypatch, rng):
    from fastbp.devices.cpu import blas_threads, prefetch

    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setenv(blas_threads.ENV_VAR, "0")
    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setattr(jit_backend.NumbaBackend, "_two_threads",
                        lambda self, *a: pytest.fail("two threads despite the user's limit"))
    X, Y = batch(rng, [6, 5, 3], 20)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        fastbp.Network([6, 5, 3], device="cpu-jit").train(X, Y, epochs=1, batch_size=4, eta=0.5)


def test_an_error_in_one_thread_does_not_hang_the_other(two_threads, monkeypatch, rng, caplog):
    """A failure in the helper thread releases the other; the plan then falls back to one
    thread with one clear warning, and the epoch is the one a one-thread run gives."""
    net = fastbp.Network([6, 5, 3], dtype="float64", device="cpu-jit", seed=4)
    twin = fastbp.Network([6, 5, 3], dtype="float64", device="cpu-jit", seed=4)
    epoch = net.backend.epoch
    real = epoch.sgd_epoch_half

    def failing(t, *args):
        if t == 1:
            raise RuntimeError("thread 1 failed")
        return real(t, *args)

    monkeypatch.setattr(epoch, "sgd_epoch_half", failing)
    X, Y = batch(rng, [6, 5, 3], 40)
    with caplog.at_level("WARNING", logger="fastbp"):
        net.train(X, Y, epochs=2, batch_size=8, eta=0.5)
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "thread 1 failed" in failed[0] and "one-thread/" in failed[0]
    monkeypatch.setenv("FASTBP_PLAN", "one-thread")
    twin.train(X, Y, epochs=2, batch_size=8, eta=0.5)
    for a, b in zip([*net.weights, *net.biases], [*twin.weights, *twin.biases]):
        np.testing.assert_array_equal(a, b)


def test_two_thread_epochs_of_two_networks_at_once(two_threads, rng):
    """Two networks in two threads, each epoch on two threads of its own (one takes the kept
    helper, the other a new one): both end as if trained in turn."""
    X, Y = batch(rng, [12, 8, 4], 300)
    assert_threads_train_as_in_turn("cpu-jit", X, Y, epochs=4, batch_size=6, eta=0.5)


def test_a_first_compile_is_announced(tmp_path, monkeypatch) -> None:
    """Where Numba's cache has no compiled epoch, the first use says it compiles (seconds)."""
    import types

    from fastbp_numba.backend import compiled_before

    module = types.SimpleNamespace(__file__=str(tmp_path / "epoch.py"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert not compiled_before(module)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "epoch.sgd_epoch-295.py311.nbi").write_bytes(b"")
    assert compiled_before(module)


def test_plots_come_with_import_fastbp() -> None:
    import fastbp

    assert callable(fastbp.plots.learning_curves) and callable(fastbp.plots.confusion_heatmap)
