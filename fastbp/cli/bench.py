"""``fastbp bench``: time training throughput (one step, one epoch) on the chosen devices, batch
sizes and network sizes, beside the per-sample loop and, on request, the peers; print the table,
save the JSON (pytest-benchmark's layout), the machine description and a chart.

``fastbp bench --compare A.json B.json`` prints the ratio table of two saved runs.
Runs offline on synthetic MNIST-shaped data unless ``--data mnist``; needs only the core install
(the chart needs matplotlib: ``pip install 'fastbp[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .options import parse_sizes

QUICK = {"sizes": [[784, 30, 10]], "batch_sizes": [10, 100, 1000], "target_s": 0.4,
         "gemm_n": 1024}


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,10,100, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a small subset that finishes in under a minute on 2 CPU cores: "
                   "[784,30,10], batches 10,100,1000, float32")
    p.add_argument("--sizes", type=parse_sizes, nargs="+", default=None, metavar="SIZES",
                   help="network sizes, e.g. --sizes 784,30,10 784,100,10 (default: "
                   "784,30,10 784,100,10 784,1024,1024,10, and 784,4096,4096,10 on GPUs)")
    p.add_argument("--batch-sizes", type=_ints, default=None, metavar="B,B,...",
                   help="mini-batch sizes (default 1,10,100,1000,10000)")
    p.add_argument("--devices", type=_names, default=None, metavar="DEV,DEV,...",
                   help="fastbp devices, or 'all' for every registered one (default: "
                   "$FASTBP_DEVICE, else cpu)")
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    p.add_argument("--kinds", type=_names, default=["step", "epoch"], metavar="step,epoch",
                   help="what to time: one SGD step, one epoch, or both (default)")
    p.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                   help="also time the peers (PyTorch, JAX) that are installed: all of them, or "
                   "those named (torch-eager torch-compile jax-jit jax-scan)")
    p.add_argument("--peers-dir", default=None,
                   help="where the peers' files are (default: benchmarks/peers of the checkout)")
    p.add_argument("--no-loop", action="store_true", help="skip the per-sample loop")
    p.add_argument("--data", default="synthetic", choices=["synthetic", "mnist"],
                   help="synthetic MNIST-shaped data (offline, default) or real MNIST")
    p.add_argument("--data-dir", default=None, help="directory of the MNIST IDX files")
    p.add_argument("--samples", type=int, default=None,
                   help="samples per epoch (default 10,000)")
    p.add_argument("--target-s", type=float, default=None,
                   help="seconds of timed rounds per case (default 1.0, 0.4 with --quick)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each case wait up to S seconds for other processes to leave "
                   "the cores (on a shared machine)")
    p.add_argument("--out", default=None,
                   help="directory for bench.json, machine.json, table.md and chart.png "
                   "(default fastbp-bench/<date-time>); 'none' writes nothing")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), default=None,
                   help="print the ratio table (B / A) of two saved runs and exit")


def _load(path: str) -> dict:
    from ..bench import report

    p = Path(path)
    if p.is_dir():
        p = p / "bench.json"
    if not p.is_file():
        from ..errors import ConfigError

        raise ConfigError(f"no saved run at {path!r} (expected a bench.json or its folder)")
    return report.load(p)


def run(args: argparse.Namespace) -> int:
    from .. import devices as devmod
    from ..bench import report
    from ..bench import workloads as wl
    from ..bench.machine import describe_machine
    from ..bench.peers import load_peers
    from ..bench.runner import results_document
    from ..bench.suite import PeakCache, run_cases
    from ..errors import ConfigError

    if args.compare:
        a, b = (_load(p) for p in args.compare)
        print(f"A: {args.compare[0]}\nB: {args.compare[1]}\n")
        print(report.compare(a, b, markdown=args.markdown))
        return 0

    sizes = args.sizes or (QUICK["sizes"] if args.quick else None)
    batches = args.batch_sizes or (QUICK["batch_sizes"] if args.quick else list(wl.BATCH_SIZES))
    target_s = args.target_s or (QUICK["target_s"] if args.quick else 1.0)
    samples = args.samples or wl.EPOCH_SAMPLES
    bad = [k for k in args.kinds if k not in wl.KINDS]
    if bad or not args.kinds:
        raise ConfigError(f"--kinds takes step and/or epoch, got {','.join(args.kinds)}")
    if any(b < 1 for b in batches) or samples < 1:
        raise ConfigError("batch sizes and --samples must be >= 1")
    names = args.devices or [devmod.requested_device()]
    devices = wl.find_devices(None if names == ["all"] else names)
    peers = {}
    if args.peers is not None:
        found = load_peers(args.peers_dir)
        unknown = [p for p in args.peers if p not in found]
        if unknown:
            raise ConfigError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(found)}")
        peers = {k: v for k, v in found.items() if not args.peers or k in args.peers}
    cases = wl.plan_cases(devices, kinds=args.kinds, sizes=sizes, batch_sizes=batches,
                          dtypes=args.dtype, loop=not args.no_loop, peers=peers,
                          epoch_samples=samples)
    data = wl.data_source(args.data, args.data_dir)
    peaks = PeakCache(devices, n=QUICK["gemm_n"] if args.quick else None)

    t0 = time.perf_counter()
    machine = describe_machine([d.name for d in devices])
    records, skipped = run_cases(cases, data, peers, peaks, target_s=target_s,
                                 wait_quiet_s=args.wait_quiet, out=sys.stderr)
    machine["load_average_after"] = machine_load()
    machine["gemm_peaks"] = peaks.all()
    settings = {"quick": args.quick, "data": args.data, "epoch_samples": samples,
                "target_s": target_s, "eta": wl.ETA, "seed": wl.SEED,
                "seconds": round(time.perf_counter() - t0, 1)}
    doc = results_document(records, machine, skipped, settings)
    rows = report.rows_of(doc)

    print(_header(machine, peaks))
    print(report.table(rows, markdown=args.markdown))
    if skipped:
        print(f"\nskipped {len(skipped)} case(s):")
        for reason, n in _reasons(skipped):
            print(f"  {n} × {reason}")
    print(f"\n{len(records)} case(s) in {settings['seconds']} s")
    if (args.out or "").lower() != "none":
        out = Path(args.out or Path("fastbp-bench") / time.strftime("%Y%m%d-%H%M%S"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
        (out / "table.md").write_text(report.table(rows, markdown=True) + "\n")
        drawn = report.chart(rows, out / "chart.png", title=machine["cpu"]["model"])
        print(f"saved {out}/bench.json, machine.json, table.md"
              + (", chart.png" if drawn else
                 " (no chart: matplotlib is not installed; pip install 'fastbp[bench]')"))
    return 0 if records or not [c for c, r in cases if r is None] else 1


def machine_load() -> list[float] | None:
    from ..bench.machine import load_average

    return load_average()


def _header(machine: dict, peaks: object) -> str:
    cpu = machine["cpu"]
    blas = "; ".join(_blas_line(b) for b in machine["blas"]
                     if b.get("user_api") == "blas") or "unknown"
    peak = "; ".join(f"{p['device']} {p['dtype']} {p['gflops']:.1f} GFLOP/s"
                     for p in peaks.all())  # type: ignore[attr-defined]
    load = machine.get("load_average")
    return (f"{cpu['model']}, {cpu['usable_cores']} cores; BLAS: {blas}\n"
            f"GEMM peak: {peak or 'not measured'}; load average {load}\n")


def _blas_line(b: dict) -> str:
    """``numpy: openblas 0.3.31 SkylakeX, 2 threads``."""
    name = " ".join(str(b[k]) for k in ("internal_api", "version", "architecture") if b.get(k))
    return f"{b.get('shipped_by', '?')}: {name}, {b.get('num_threads', '?')} threads"


def _reasons(skipped: list[dict]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])
