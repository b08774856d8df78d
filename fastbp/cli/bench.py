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

from ..io.targets import write_file
from .bench_checks import check_data, check_devices, check_numbers, output_folder
from .options import parse_sizes

QUICK = {"sizes": [[784, 30, 10]], "batch_sizes": [10, 100, 1000], "target_s": 0.4,
         "gemm_n": 1024}


LISTS = """\
List options take values separated by spaces or by commas: --batch-sizes 10 100 1000
and --batch-sizes 10,100,1000 are the same. --sizes takes networks separated by spaces,
each with its layers separated by commas: --sizes 784,30,10 784,100,10."""


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 10 100 1000, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _dtypes(text: str) -> list[str]:
    names = _names(text)
    bad = [n for n in names if n not in ("float32", "float64")]
    if bad:
        raise argparse.ArgumentTypeError(f"dtype must be float32 or float64, got {bad[0]!r}")
    return names


def _flat(values: list[list] | None) -> list | None:
    """``--x a,b c`` → ``[a, b, c]``: each value of a list option may hold a comma list."""
    return None if values is None else [v for part in values for v in part]


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = LISTS
    p.add_argument("--quick", action="store_true",
                   help="a small subset that finishes in under a minute on 2 CPU cores: "
                   "784,30,10, batches 10 100 1000, float32")
    p.add_argument("--sizes", type=parse_sizes, nargs="+", default=None, metavar="N,N,...",
                   help="network sizes, e.g. --sizes 784,30,10 784,100,10 (default: "
                   "784,30,10 784,100,10 784,1024,1024,10, and 784,4096,4096,10 on GPUs)")
    p.add_argument("--batch-sizes", type=_ints, nargs="+", default=None, metavar="B",
                   help="mini-batch sizes (default: 1 10 100 1000 10000)")
    p.add_argument("--devices", type=_names, nargs="+", default=None, metavar="DEVICE",
                   help="fastbp devices, or all for every registered one (default: "
                   "$FASTBP_DEVICE, else auto: a GPU that works, else cpu-jit)")
    p.add_argument("--dtype", type=_dtypes, nargs="+", default=None, metavar="DTYPE",
                   help="float32 and/or float64 (default: float32)")
    p.add_argument("--kinds", type=_names, nargs="+", default=None, metavar="KIND",
                   help="what to time: step (one SGD step), epoch (one shuffled epoch) and/or "
                   "conv (an epoch of the book's two-conv-layer ReLU network, chapter6-conv2, "
                   "at batches 10 and 100) (default: all three; step and epoch with --quick)")
    p.add_argument("--peers", type=_names, nargs="*", default=None, metavar="NAME",
                   help="also time the peers (PyTorch, JAX) that are installed: all of them "
                   "(no NAME), or those named: torch-eager torch-compile jax-jit jax-scan")
    p.add_argument("--peers-dir", default=None, metavar="DIR",
                   help="where the peers' files are (default: benchmarks/peers of the checkout)")
    p.add_argument("--no-loop", action="store_true", help="skip the per-sample loop")
    p.add_argument("--data", default="synthetic", metavar="DATA",
                   help="synthetic (random MNIST-shaped data, offline), mnist (MNIST from "
                   "$FASTBP_DATA or the cache, as fastbp train finds it) or DIR, a folder of "
                   "the MNIST files (default: synthetic)")
    p.add_argument("--data-dir", dest="data", help=argparse.SUPPRESS)
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="samples per epoch (default: 10,000)")
    p.add_argument("--target-s", type=float, default=None, metavar="S",
                   help="seconds of timed rounds per case (default: 1.0, 0.4 with --quick)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each case wait up to S seconds for other processes to leave "
                   "the cores, on a shared machine (default: 0, no wait)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="directory for bench.json, machine.json, table.md and chart.png "
                   "(default: fastbp-bench/<date-time>); none writes nothing")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="print the ratio table (B / A) of two saved runs, each a bench.json or "
                   "the folder --out wrote it to, and exit")


def data_choice(value: str) -> tuple[str, str | None]:
    """``--data``: ``synthetic``, ``mnist`` or a folder of MNIST files → the kind and folder."""
    if value in ("synthetic", "mnist") and not Path(value).is_dir():
        return value, None
    if not Path(value).is_dir():
        from ..errors import ConfigError

        raise ConfigError(f"--data {value}: not synthetic, mnist or a folder of the MNIST files")
    return "mnist", value


def _load(path: str) -> dict:
    from .bench_checks import load_run

    return load_run(path)


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

    args.batch_sizes, args.devices = _flat(args.batch_sizes), _flat(args.devices)
    args.kinds = _flat(args.kinds) or (["step", "epoch"] if args.quick else
                                       ["step", "epoch", "conv"])
    args.dtype = _flat(args.dtype) or ["float32"]
    args.peers = _flat(args.peers)
    check_numbers(args)  # all before any timing: a bad value costs nothing
    check_data(args.data)
    check_devices(args.devices or [])
    out = output_folder(args.out)
    sizes = args.sizes or (QUICK["sizes"] if args.quick else None)
    batches = args.batch_sizes or (QUICK["batch_sizes"] if args.quick else list(wl.BATCH_SIZES))
    target_s = args.target_s if args.target_s is not None else (
        QUICK["target_s"] if args.quick else 1.0)
    samples = args.samples if args.samples is not None else wl.EPOCH_SAMPLES
    bad = [k for k in args.kinds if k not in wl.KINDS]
    if bad or not args.kinds:
        raise ConfigError(f"--kinds takes step, epoch and/or conv, got "
                          f"{','.join(args.kinds)}")
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
    data = wl.data_source(*data_choice(args.data))
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
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # checked above: only the default's parents
        for name, text in (("bench.json", json.dumps(doc, indent=1)),
                           ("machine.json", json.dumps(machine, indent=2)),
                           ("table.md", report.table(rows, markdown=True))):
            write_file(out / name, (text + "\n").encode("utf-8"))  # regular files only
        drawn = report.chart(rows, out / "chart.png", title=machine["cpu"]["model"])
        print(f"saved {out}/bench.json, machine.json, table.md"
              + (", chart.png" if drawn else
                 " (no chart: matplotlib is not installed; pip install 'fastbp[bench]')"))
    if not records:
        err = ConfigError(f"nothing was timed: {len(cases)} case(s), every one skipped or failed "
                          "(reasons above)")
        err.exit_status = 1  # type: ignore[attr-defined]
        raise err
    return 0


def machine_load() -> list[float] | None:
    from ..bench.machine import load_average

    return load_average()


def _header(machine: dict, peaks: object) -> str:
    """The machine, the GEMM library each device's training called, the other BLAS libraries
    loaded, the GEMM peaks and the load."""
    cpu = machine["cpu"]
    gemm: dict[str, list[str]] = {}
    for name, info in machine.get("devices", {}).items():
        if isinstance(info, dict) and info.get("gemm"):
            gemm.setdefault(str(info["gemm"]), []).append(name)
    gemms = "; ".join(f"{', '.join(names)}: {lib}" for lib, names in gemm.items())
    blas = "; ".join(_blas_line(b) for b in machine["blas"]
                     if b.get("user_api") == "blas") or "unknown"
    peak = "; ".join(f"{p['device']} {p['dtype']} {p['gflops']:.1f} GFLOP/s"
                     for p in peaks.all())  # type: ignore[attr-defined]
    load = machine.get("load_average")
    return (f"{cpu['model']}, {cpu['usable_cores']} cores\n"
            + (f"GEMMs: {gemms}\n" if gemms else "")
            + f"BLAS loaded: {blas}\n"
            f"GEMM peak (best of several shapes): {peak or 'not measured'}; "
            f"load average {load}\n")


def _blas_line(b: dict) -> str:
    """``numpy: openblas 0.3.31 SkylakeX, 2 threads``."""
    name = " ".join(str(b[k]) for k in ("internal_api", "version", "architecture") if b.get(k))
    return f"{b.get('shipped_by', '?')}: {name}, {b.get('num_threads', '?')} threads"


def _reasons(skipped: list[dict]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])
