"""The GPU check's report (``report.py write``): the stages' records and results in the work
folder as ``results.json`` and ``results.md``, each of the issue's targets named met, not met or
not measured.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

TARGET_GRAPH_M10 = 1_000_000
TARGET_VS_JAX = 1.2
TARGET_VS_CUBLAS = 0.7
MARGIN_PERCENT = 10  # fastbp.devices.planner.MARGIN

def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_stages(work: Path) -> list[dict[str, Any]]:
    stages = []
    try:
        lines = (work / "stages.tsv").read_text().splitlines()
    except OSError:
        return stages
    for line in lines:
        parts = line.split("\t")
        parts += [""] * (5 - len(parts))
        name, status, rc, seconds, note = parts[:5]
        stages.append({"stage": name, "status": status, "rc": rc, "seconds": seconds,
                       "note": note})
    return stages


def read_junit(path: Path) -> dict[str, Any] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed, skipped = [], []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            for tag in ("failure", "error"):
                el = case.find(tag)
                if el is not None:
                    failed.append({"test": name, "message": (el.get("message") or "")[:300]})
            el = case.find("skipped")
            if el is not None:
                skipped.append({"test": name, "reason": (el.get("message") or "")[:200]})
    counts["passed"] = (counts["tests"] - counts["failures"] - counts["errors"]
                        - counts["skipped"])
    return {**counts, "failed": failed, "skipped_tests": skipped}


def sanitizer_verdicts(log: Path, stages: list[dict[str, Any]]) -> dict[str, str]:
    """What each compute-sanitizer tool said, from its section of the log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    verdicts = {}
    for tool in ("memcheck", "racecheck"):
        stage = next((s for s in stages if s["stage"] == f"sanitizer-{tool}"), None)
        part = text.split(f"== sanitizer-{tool}:", 1)
        part = part[1].split("== sanitizer-", 1)[0] if len(part) > 1 else ""
        found = re.findall(r"ERROR SUMMARY: (\d+) error", part)
        hazards = re.findall(r"RACECHECK SUMMARY: (\d+) hazard", part)
        if stage is None:
            verdicts[tool] = "not run"
        elif stage["status"] == "skipped":
            verdicts[tool] = f"not run: {stage['note']}"
        elif stage["status"] == "unavailable":
            verdicts[tool] = f"unavailable here: {stage['note']}"
        elif found or hazards:
            n = sum(int(x) for x in found + hazards)
            verdicts[tool] = "clean (0 errors)" if n == 0 else f"{n} errors/hazards, see log"
        elif stage["status"] == "ok":
            verdicts[tool] = "ran without a summary line"
        else:
            verdicts[tool] = (f"did not run here ({stage['status']}, rc {stage['rc']}): "
                              "compute-sanitizer works only on some machines; see "
                              "sanitizer.log")
    return verdicts


def rate_table(timing: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per case: each contender's samples/s, fastbp's default path against JAX, and
    the cuBLAS bound."""
    cases: dict[tuple, dict[str, Any]] = {}
    contenders: list[str] = []
    for row in timing.get("rows", []):
        key = (tuple(row["sizes"]), row["batch_size"])
        case = cases.setdefault(key, {"sizes": list(key[0]), "batch_size": key[1]})
        name = row["contender"]
        if name == "*":
            case["note"] = row.get("skipped", "")
            continue
        if name not in contenders:
            contenders.append(name)
        case[name] = row.get("samples_per_s")
        if row.get("error"):
            case.setdefault("errors", []).append(f"{name}: {row['error']}")
    for bound in timing.get("bounds", []):
        key = (tuple(bound["sizes"]), bound["batch_size"])
        if key in cases:
            cases[key]["cublas_bound"] = bound.get("cublas_bound_samples_per_s")
            cases[key]["sgemm_peak_gflops"] = bound.get("sgemm_peak_gflops")
            for k in ("cublas_step_s", "host_issue_s", "queued", "gemms_per_step"):
                cases[key][k] = bound.get(k)
    for case in cases.values():
        fastbp = [case.get(k) for k in ("graph", "eager") if case.get(k)]
        case["fastbp_gpu"] = max(fastbp) if fastbp else None
        if case["fastbp_gpu"] and case.get("jax-scan"):
            case["vs_jax_scan"] = case["fastbp_gpu"] / case["jax-scan"]
        if case["fastbp_gpu"] and case.get("cublas_bound"):
            case["vs_cublas"] = case["fastbp_gpu"] / case["cublas_bound"]
    return list(cases.values()), contenders


def targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    m10 = next((c for c in cases if c["sizes"] == [784, 30, 10] and c["batch_size"] == 10), None)
    value = m10.get("graph") if m10 else None
    out.append({"target": "graphs at m=10 on [784,30,10] ≥ 1,000,000 samples/s",
                "value": value, "met": None if value is None else value >= TARGET_GRAPH_M10})
    ratios = [c for c in cases if c.get("vs_jax_scan") is not None]
    worst = min(ratios, key=lambda c: c["vs_jax_scan"]) if ratios else None
    out.append({"target": "≥ 1.2× JAX lax.scan on the same GPU at every batch",
                "value": None if worst is None else
                f"{worst['vs_jax_scan']:.2f}× at {worst['sizes']} m={worst['batch_size']} "
                f"(worst of {len(ratios)})",
                "met": None if worst is None else all(c["vs_jax_scan"] >= TARGET_VS_JAX
                                                      for c in ratios)})
    big = [c for c in cases if c.get("vs_cublas") is not None]
    worst = min(big, key=lambda c: c["vs_cublas"]) if big else None
    out.append({"target": "big networks ≥ 70 % of the cuBLAS rate measured here",
                "value": None if worst is None else
                f"{100 * worst['vs_cublas']:.0f} % at {worst['sizes']} m={worst['batch_size']}",
                "met": None if worst is None else all(c["vs_cublas"] >= TARGET_VS_CUBLAS
                                                      for c in big)})
    value = crossover(cases)
    out.append({"target": "the CPU/GPU crossover batch size published", "value": value,
                "met": None if value is None else True})
    return out


VERDICTS = {True: "met", False: "**not met**", None: "not measured"}


def crossover(cases: list[dict[str, Any]]) -> str | None:
    """Per network timed at two batch sizes or more: the smallest batch from which fastbp on
    the GPU beats fastbp on the CPU at every larger batch measured; ``None`` if none."""
    nets: dict[tuple, list[dict[str, Any]]] = {}
    for c in cases:
        if c.get("fastbp_gpu") and c.get("cpu"):
            nets.setdefault(tuple(c["sizes"]), []).append(c)
    parts = []
    for sizes, rows in nets.items():
        rows.sort(key=lambda c: c["batch_size"])
        if len(rows) < 2:
            continue
        wins = [c["fastbp_gpu"] > c["cpu"] for c in rows]
        batches = [c["batch_size"] for c in rows]
        if not any(wins):
            parts.append(f"{list(sizes)}: the CPU at every batch measured ({batches})")
        elif all(wins):
            parts.append(f"{list(sizes)}: the GPU at every batch measured ({batches})")
        else:
            first = next(i for i in range(len(wins)) if all(wins[i:])) if wins[-1] else None
            parts.append(f"{list(sizes)}: " + (f"the GPU from m={batches[first]}"
                                              if first is not None else
                                              f"no crossover (GPU wins at {wins})"))
    return "; ".join(parts) or None


def fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and x < 100:
        return f"{x:.2f}"
    return f"{int(x):,}"


def markdown(result: dict[str, Any]) -> str:
    env = result.get("machine") or {}
    lines = [f"# fastbp GPU check, {result['finished']}", ""]
    if result["dry_run"]:
        lines += ["**Dry run** on the NumPy stand-in for CuPy, without a GPU: it checks that "
                  "every stage runs; no figure below is a measurement.", ""]
    device = (result.get("timing") or {}).get("device") or {}
    lines += [f"- GPU: {env.get('gpu', '?')}",
              f"- CuPy {device.get('cupy', env.get('packages', {}).get('cupy', '?'))}, CUDA "
              f"runtime {device.get('cuda_runtime', '?')}, driver {device.get('cuda_driver', '?')}"
              f", compute capability {device.get('compute_capability', '?')}",
              f"- CPU: {env.get('cpu', '?')} ({env.get('cores', '?')} cores), Python "
              f"{env.get('python', '?')}",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in
                                          (env.get('packages') or {}).items()), ""]
    lines += ["## Stages", "", "| stage | status | seconds | note |", "|---|---|---:|---|"]
    for s in result["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['note']} |")
    tests = result.get("tests")
    lines += ["", "## GPU tests (tests.log)", ""]
    if tests:
        lines.append(f"{tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
                     f"{tests['skipped']} skipped.")
        for f in tests["failed"]:
            lines.append(f"- FAILED `{f['test']}`: {f['message']}")
    else:
        lines.append("No test report (see tests.log).")
    kernels = result.get("kernels")
    lines += ["", "## Raw kernels against NumPy float64 (kernels.log)", ""]
    if kernels:
        s = kernels["summary"]
        lines += [f"{s['checks'] - s['failed']} of {s['checks']} checks pass "
                  "(worst: the largest |error| / (2 × rounding bound); ≤ 1 passes).", "",
                  "| kernel | checks | failed | worst |", "|---|---:|---:|---:|"]
        for name, k in s["by_kernel"].items():
            lines.append(f"| {name} | {k['checks']} | {k['failed']} | {k['worst']:.3g} |")
        for f in kernels.get("failed", [])[:20]:
            lines.append(f"- FAILED {f['kernel']} {f['dtype']} {f['case']}: {f['note']}")
    else:
        lines.append("No kernel report (see kernels.log).")
    conv = result.get("conv")
    lines += ["", "## Chapter 6's conv net (conv.log)", ""]
    if conv:
        lines.append(f"One float64 epoch on {conv.get('device')} against the cpu: relative "
                     f"difference {conv.get('float64_relative_difference', float('nan')):.3g} "
                     "(≤ 1e-10 passes). float32 training samples/s: mini-batch 10 "
                     f"{conv.get('samples_per_s_m10', 0):,.0f}, mini-batch 100 "
                     f"{conv.get('samples_per_s_m100', 0):,.0f}.")
    else:
        lines.append("No conv report (see conv.log).")
    cases, contenders = result.get("rates") or ([], [])
    timing = result.get("timing") or {}
    lines += ["", "## Training throughput, samples/s (timing.log)", ""]
    if cases:
        lines += [f"{timing.get('n', '?'):,} samples per epoch ({timing.get('data', '?')}), "
                  f"float32, best of {timing.get('repeat', '?')} epochs after a warm-up, a "
                  "device synchronize inside each timed epoch.", ""]
        head = ["network", "batch", *contenders, "fastbp / jax-scan", "cuBLAS bound"]
        lines += ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
        for c in cases:
            cells = [str(c["sizes"]), str(c["batch_size"]), *(fmt(c.get(k)) for k in contenders),
                     fmt(c.get("vs_jax_scan")), fmt(c.get("cublas_bound"))]
            lines.append("| " + " | ".join(cells) + " |")
        for c in cases:
            for e in c.get("errors", []):
                lines.append(f"- {c['sizes']} m={c['batch_size']}: {e}")
            if c.get("cublas_step_s"):
                lines.append(
                    f"- cuBLAS bound of {c['sizes']} m={c['batch_size']}: its "
                    f"{c.get('gemms_per_step')} GEMMs take {1e6 * c['cublas_step_s']:.1f} µs a "
                    f"step back to back on the GPU (CUDA events); issuing them from Python "
                    f"takes {1e6 * (c.get('host_issue_s') or 0):.1f} µs"
                    + ("" if c.get("queued") else " (they did not all queue behind the spin "
                       "kernel: the bound is pessimistic)"))
    else:
        lines.append("No timing results (see timing.log).")
    lines += ["", "## Plans: graph or eager, measured (fastbp tune --device cuda)", ""]
    table = (result.get("plans") or {}).get("plans") or []
    if table:
        lines += ["The planner's trials, samples/s; a candidate replaces the estimate "
                  f"(`FASTBP_PLAN=off`) only when {MARGIN_PERCENT} % faster.", "",
                  "| configuration | chosen | estimate | graph | eager | measured in s |",
                  "|---|---|---|---:|---:|---:|"]
        for row in table:
            speeds = row["speeds"]
            lines.append(f"| {row['configuration']} | {row['choice']} | {row['estimate']} | "
                         f"{fmt(speeds.get('graph'))} | {fmt(speeds.get('eager'))} | "
                         f"{fmt(row.get('measured_s'))} |")
    else:
        lines.append("No plans measured (see check.log, stage plans).")
    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for t in result.get("targets", []):
        met = VERDICTS[t["met"]]
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '–'} | "
                     f"{met} |")
    lines += ["", "## compute-sanitizer (sanitizer.log)", ""]
    for tool, verdict in (result.get("sanitizer") or {}).items():
        lines.append(f"- {tool}: {verdict}")
    return "\n".join(lines) + "\n"


def write(work: Path, out: Path, dry_run: bool) -> int:
    stages = read_stages(work)
    timing = load_json(work / "timing.json")
    rates = rate_table(timing) if timing else ([], [])
    result = {
        "dry_run": dry_run,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": load_json(work / "env.json"),
        "stages": stages,
        "tests": read_junit(work / "junit.xml"),
        "kernels": load_json(work / "kernels.json"),
        "conv": load_json(work / "conv.json"),
        "timing": timing,
        "plans": load_json(work / "plans.json"),
        "rates": rates,
        "targets": targets(rates[0]),
        "sanitizer": sanitizer_verdicts(out / "sanitizer.log", stages),
    }
    if result["kernels"]:
        result["kernels"].pop("rows", None)  # the failed ones are kept; all are in kernels.log
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(result))
    return 0
