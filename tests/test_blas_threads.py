"""The BLAS thread policy of the cpu epochs: one thread for small steps, the library's otherwise."""

import numpy as np
import pytest

import fastbp
from fastbp.devices.cpu import blas_threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads_now():
    return max(i["num_threads"] for i in threadpoolctl.threadpool_info()
               if i["user_api"] == "blas")


def test_step_work_counts_the_feedforward_products():
    assert blas_threads.step_work([784, 30, 10], 10) == 10 * (784 * 30 + 30 * 10)


@pytest.mark.parametrize("value,want", [(None, blas_threads.THREADED_WORK), ("0", 0),
                                        ("1e6", 1_000_000)])
def test_threshold_from_the_environment(monkeypatch, value, want):
    monkeypatch.setenv("FASTBP_BLAS", "openblas")
    if value is None:
        monkeypatch.delenv(blas_threads.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(blas_threads.ENV_VAR, value)
    assert blas_threads.threaded_work() == want


def test_a_bad_threshold_is_a_config_error(monkeypatch):
    monkeypatch.setenv(blas_threads.ENV_VAR, "many")
    with pytest.raises(fastbp.FastbpError, match="FASTBP_THREADED_WORK"):
        blas_threads.threaded_work()


def test_small_steps_run_on_one_thread_and_the_setting_comes_back(monkeypatch):
    monkeypatch.delenv(blas_threads.ENV_VAR, raising=False)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads_now()
        with blas_threads.step_threads([784, 30, 10], 10):
            assert blas_threads_now() == 1
        assert blas_threads_now() == before
        with blas_threads.step_threads([784, 1024, 1024, 10], 256):  # large: left alone
            assert blas_threads_now() == before


def test_threaded_is_the_step_against_the_threshold(monkeypatch):
    monkeypatch.setenv(blas_threads.ENV_VAR, "1e6")
    assert blas_threads.threaded([784, 30, 10], 100)  # 2.4 M multiply-adds
    assert not blas_threads.threaded([784, 30, 10], 10)  # 0.24 M
    monkeypatch.setenv(blas_threads.ENV_VAR, "0")
    assert blas_threads.threaded([4, 3, 2], 1)  # 0: the library's setting everywhere


def test_library_threads_reads_the_setting():
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads.library_threads() == 1


def test_off_leaves_the_library_setting(monkeypatch):
    monkeypatch.setenv(blas_threads.ENV_VAR, "0")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads_now()
        with blas_threads.step_threads([4, 3, 2], 1):
            assert blas_threads_now() == before


def test_training_under_the_policy_equals_training_without(monkeypatch, rng):
    X = rng.random((20, 60))
    Y = np.eye(5)[:, rng.integers(0, 5, 60)]
    runs = []
    for value in ("0", "1e12"):
        monkeypatch.setenv(blas_threads.ENV_VAR, value)
        net = fastbp.Network([20, 8, 5], dtype="float64", seed=4)
        net.train(X, Y, epochs=2, batch_size=7, eta=0.5)
        runs.append(list(net.weights))
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, atol=1e-12)


class RecordsEvaluation:
    """A device's evaluation, noting the BLAS threads each of its products runs on (mixed into
    the ``cpu`` or ``cpu-jit`` device's class)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.threads_seen: list[int] = []

    def argmax_columns(self, a):
        self.threads_seen.append(blas_threads_now())
        return super().argmax_columns(a)


def evaluations(device_class, sizes, m, rng):
    """The BLAS threads of the two evaluations of a two-epoch training with a test set."""
    X = rng.random((sizes[0], 2 * m)).astype(np.float32)
    y = rng.integers(0, sizes[-1], 2 * m)
    be = type("Recording", (RecordsEvaluation, device_class), {})(dtype="float32")
    net = fastbp.Network(sizes, device=be, seed=1)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        net.train(X, y, epochs=2, batch_size=m, eta=0.1, test=(X, y))
        assert blas_threads_now() == 2  # the setting comes back
    return be.threads_seen


@pytest.mark.parametrize("sizes,m,want", [([784, 30, 10], 10, 1), ([784, 1024, 10], 512, 2)])
def test_evaluation_between_epochs_runs_on_the_epochs_threads(monkeypatch, rng, sizes, m, want):
    """An evaluation between one-thread epochs runs on one BLAS thread (a threaded product's
    idle thread would spin into the next epoch); between threaded epochs, on the library's."""
    monkeypatch.delenv(blas_threads.ENV_VAR, raising=False)
    monkeypatch.setenv("FASTBP_BLAS", "openblas")
    assert evaluations(fastbp.NumpyBackend, sizes, m, rng) == [want, want]


@pytest.mark.parametrize("forced,want", [("one-thread/openblas", 1),
                                         ("blas-threads/openblas", 2)])
def test_cpu_jit_evaluation_follows_the_planned_strategy(monkeypatch, rng, forced, want):
    """On ``cpu-jit`` the evaluation runs on one BLAS thread unless the epochs run
    ``blas-threads``."""
    jit = pytest.importorskip("fastbp_numba")
    monkeypatch.setenv("FASTBP_PLAN", forced)
    monkeypatch.setenv("FASTBP_BLAS", "openblas")
    assert evaluations(jit.NumbaBackend, [20, 6, 4], 10, rng) == [want, want]
