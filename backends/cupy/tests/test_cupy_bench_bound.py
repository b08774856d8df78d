"""``benchmarks/speed_cuda.py``'s cuBLAS bound on the CuPy stand-in: the step's GEMMs are issued
back to back between two CUDA events, behind the spin kernel, with one synchronize after the
last; no synchronize (and no Python timing) between GEMMs, which would add the host's launch
cost to every one of them and make the bound pessimistic."""

from __future__ import annotations

import pytest

pytest.importorskip("fastbp_cupy")
from fastbp_fake_cupy import install  # noqa: E402
from stand_in import load_speed_cuda  # noqa: E402


@pytest.mark.parametrize("sizes,gemms", [([20, 16, 16, 4], 8), ([20, 4], 2)])
def test_the_cublas_bound_times_the_steps_gemms_back_to_back_with_events(monkeypatch, sizes,
                                                                         gemms):
    fake = install(monkeypatch)
    speed = load_speed_cuda()
    fake.trace.clear()
    bound = speed.cublas_bound(sizes, 8, reps=4, peak_size=32)
    assert bound["gemms_per_step"] == gemms
    assert bound["cublas_step_s"] > 0 and bound["cublas_bound_samples_per_s"] > 0
    assert bound["host_issue_s"] > 0 and "queued" in bound
    log = fake.trace
    first = log.index("event")  # the step's timing: start event ... end event, then one wait
    second = log.index("event", first + 1)
    assert log[first + 1:second] == ["gemm"] * (4 * gemms)
    assert log[second + 1] == "event-synchronize"
    assert fake.calls["raw"] >= 2  # the spin kernel held the stream before each timing


def test_the_bound_queues_at_most_what_cudas_launch_queue_holds(monkeypatch):
    fake = install(monkeypatch)
    speed = load_speed_cuda()
    fake.trace.clear()
    speed.cublas_bound([20, 16, 16, 4], 8, reps=1000, peak_size=32)
    first = fake.trace.index("event")
    second = fake.trace.index("event", first + 1)
    assert 0 < second - first - 1 <= speed.QUEUED_LAUNCHES
