"""cpu-jit between epochs: the evaluation after an epoch runs on the BLAS threads the planned
strategy leaves it (one, unless the epochs run ``blas-threads``), so no idle BLAS thread spins
into the next epoch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")
threadpoolctl = pytest.importorskip("threadpoolctl")

from fastbp_numba import NumbaBackend  # noqa: E402

import fastbp  # noqa: E402


def blas_threads_now() -> int:
    return max(i["num_threads"] for i in threadpoolctl.threadpool_info()
               if i["user_api"] == "blas")


class RecordsEvaluation(NumbaBackend):
    """cpu-jit, noting the BLAS threads each evaluation runs on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.threads_seen: list[int] = []

    def argmax_columns(self, a):
        self.threads_seen.append(blas_threads_now())
        return super().argmax_columns(a)


@pytest.mark.parametrize("forced,want", [("one-thread/openblas", 1),
                                         ("blas-threads/openblas", 2)])
def test_evaluation_follows_the_planned_strategy(monkeypatch, forced, want):
    monkeypatch.setenv("FASTBP_PLAN", forced)
    monkeypatch.setenv("FASTBP_BLAS", "openblas")
    rng = np.random.default_rng(5)
    X = rng.random((20, 40)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    be = RecordsEvaluation(dtype="float32")
    net = fastbp.Network([20, 6, 4], device=be, seed=1)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        net.train(X, y, epochs=2, batch_size=10, eta=0.1, test=(X, y))
        assert blas_threads_now() == 2
    assert be.threads_seen == [want, want]
