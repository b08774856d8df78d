"""Training throughput: one SGD step and one full epoch, for every case of the suite.

The cases (device × implementation × sizes × batch × dtype, with the pairs that make no sense
skipped and the reason said) come from :func:`fastbp.bench.workloads.plan_cases`; see
``conftest.py`` for the options. Each benchmark's ``extra_info`` carries samples/s, GFLOP/s and
the fraction of the device's GEMM peak, and its group is (kind, sizes, batch, dtype), so the
tables compare like with like.
"""

from __future__ import annotations

import pytest

from fastbp.bench.contention import OtherLoad, wait_for_quiet
from fastbp.bench.peers import PeerUnavailable
from fastbp.bench.runner import calibrate, throughput_info
from fastbp.bench.workloads import prepare


def _measure(case, benchmark, bench) -> None:  # noqa: ANN001
    try:
        prepared = prepare(case, bench.data, bench.peers)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = case.group
    benchmark.extra_info.update(case.params)
    if benchmark.disabled:  # smoke mode: the case runs once, nothing is timed
        benchmark.pedantic(prepared.run, rounds=1, iterations=1)
        return
    rounds, iterations, _ = calibrate(prepared.run, bench.target_s)
    if bench.wait_quiet_s > 0:
        wait_for_quiet(bench.wait_quiet_s)
    with OtherLoad() as load:
        benchmark.pedantic(prepared.run, rounds=rounds, iterations=iterations, warmup_rounds=0)
    extra = throughput_info(case, benchmark.stats.stats.min, bench.peaks.get(case))
    extra["gemm_peak_device"] = bench.peaks.device_for(case)
    extra["other_cores"] = load.cores  # cores other processes used during the timed rounds
    benchmark.extra_info.update(extra)
    benchmark.extra_info.update(prepared.info)


def test_step(case, benchmark, bench) -> None:  # noqa: ANN001
    """One SGD step on a fixed mini-batch already on the device."""
    _measure(case, benchmark, bench)


def test_epoch(case, benchmark, bench) -> None:  # noqa: ANN001
    """One shuffled epoch of ``N`` samples (``Network.train(..., epochs=1)`` for fastbp)."""
    _measure(case, benchmark, bench)


def test_conv(case, benchmark, bench) -> None:  # noqa: ANN001
    """One shuffled epoch of the book's two-conv-layer ReLU network (``Network(layers)``)."""
    _measure(case, benchmark, bench)
