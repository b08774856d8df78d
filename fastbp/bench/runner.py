"""Timing without pytest: calibrated rounds, statistics and results in pytest-benchmark's JSON.

``fastbp bench`` uses this so it works on a core install; the pytest suite in ``benchmarks/``
uses pytest-benchmark itself, with the same calibration (:func:`calibrate`) and the same
``extra_info`` (:func:`throughput_info`), so both write JSON that ``--compare`` reads alike.
The throughput of a case is its samples per call over the **fastest** round: on a shared machine
the fastest round is the one least disturbed by other work.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from .flops import flops_per_sample, needed_flops_per_sample

JSON_VERSION = "5.1.0"  # the pytest-benchmark JSON layout these files follow


def calibrate(run: Callable[[], Any], target_s: float = 1.0, min_round_s: float = 2e-3,
              min_rounds: int = 3, max_rounds: int = 200) -> tuple[int, int, float]:
    """Warm ``run`` up (compiles, caches, thread pools), time one call, and choose
    ``(rounds, iterations, seconds_per_call)`` so the rounds take about ``target_s`` and each
    round at least ``min_round_s``; slow calls get at least 2 rounds, others ``min_rounds``."""
    t0 = time.perf_counter()
    run()  # warm-up: not timed
    t = time.perf_counter() - t0
    if t <= target_s:  # a slow call (or one that compiled) is its own estimate: saves a call
        t0 = time.perf_counter()
        run()
        t = time.perf_counter() - t0
    t = max(t, 1e-7)
    iterations = max(1, math.ceil(min_round_s / t))
    floor = 2 if t > target_s else min_rounds
    rounds = max(floor, min(max_rounds, int(target_s / (t * iterations))))
    return rounds, iterations, t


def time_rounds(run: Callable[[], Any], rounds: int, iterations: int) -> list[float]:
    """Seconds per call of each round (a round is ``iterations`` back-to-back calls)."""
    data = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iterations):
            run()
        data.append((time.perf_counter() - t0) / iterations)
    return data


def stats_of(data: Sequence[float], iterations: int) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for per-call times ``data``."""
    data = list(data)
    n = len(data)
    srt = sorted(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    if n > 1:
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    else:
        q1 = q3 = data[0]
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = [x for x in srt if lo <= x <= hi] or srt
    iqr_out = sum(1 for x in data if x < lo or x > hi)
    sd_out = sum(1 for x in data if abs(x - mean) > stddev) if n > 1 else 0
    return {
        "min": srt[0], "max": srt[-1], "mean": mean, "stddev": stddev, "rounds": n,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_out, "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}", "ld15iqr": inside[0], "hd15iqr": inside[-1],
        "ops": 1.0 / mean if mean > 0 else 0.0, "total": sum(data) * iterations,
        "data": data, "iterations": iterations,
    }


def throughput_info(case: Any, seconds: float, peak: dict[str, Any] | None) -> dict[str, Any]:
    """``extra_info`` of a case timed at ``seconds`` per call: samples/s, GFLOP/s, % of peak."""
    rate = case.samples / seconds
    fps = flops_per_sample(case.sizes, case.batch_size)
    needed = needed_flops_per_sample(case.sizes, case.batch_size)
    gflops = rate * fps / 1e9
    info: dict[str, Any] = {
        **case.params, "device_kind": case.hardware, "samples": case.samples,
        "seconds": seconds, "samples_per_s": rate, "gflops": gflops,
        "flops_per_sample": fps, "needed_flops_per_sample": needed,
        "needed_gflops": rate * needed / 1e9, "rate_basis": "fastest round",
    }
    if peak:
        info["gemm_peak_gflops"] = peak["gflops"]
        info["gemm_peak_n"] = peak["n"]
        info["pct_gemm_peak"] = 100.0 * gflops / peak["gflops"]
    return info


def benchmark_record(case: Any, data: Sequence[float], iterations: int,
                     extra: dict[str, Any], module: str = "fastbp bench") -> dict[str, Any]:
    """One entry of the JSON's ``benchmarks`` list."""
    return {
        "group": case.group, "name": case.name,
        "fullname": f"{module}::{case.name}", "params": case.params, "param": case.param_id,
        "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1,
                    "max_time": None, "min_time": None, "warmup": True},
        "stats": stats_of(data, iterations),
    }


def results_document(records: list[dict[str, Any]], machine: dict[str, Any],
                     skipped: list[dict[str, Any]] | None = None,
                     settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole JSON file, laid out as pytest-benchmark's ``--benchmark-json``."""
    versions = machine.get("versions", {})
    cpu = machine.get("cpu", {})
    return {
        "machine_info": {
            "node": machine.get("host"), "processor": cpu.get("model"),
            "machine": cpu.get("machine"), "python_version": versions.get("python"),
            "system": machine.get("system"), "cpu": {"brand_raw": cpu.get("model"),
                                                      "count": cpu.get("logical_cores")},
            "fastbp": machine,
        },
        "commit_info": commit_info(),
        "benchmarks": records,
        "datetime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": JSON_VERSION,
        "skipped": skipped or [],
        "settings": settings or {},
    }


def commit_info() -> dict[str, Any]:
    """The git commit of the working tree, when there is one (as pytest-benchmark records)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    return {"id": out.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "project": "fastbp"}
