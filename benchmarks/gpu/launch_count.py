"""Kernel launches and host microseconds per training step of the ``cuda`` device, on the CuPy
stand-in (``backends/cupy/tests/fastbp_fake_cupy.py``) with its cuBLAS, kernels and graphs
counting their calls and computing nothing, so what is timed is fastbp's own host work per step
(CuPy's cost per call comes on top on a GPU: 15–25 µs for ``cublas.gemm``, less for a raw
kernel, by CuPy's source, not measured here).

- ``eager``: per step, the ``cublas.gemm`` calls, the ``ElementwiseKernel`` and raw kernel
  launches and the ``take`` gathers, each a launch from Python;
- ``graph``: per step, the nodes of the captured graph (kernels the GPU runs) and the host's
  share of one ``graph.launch`` per ``graph_steps`` steps.

Usage: ``python benchmarks/gpu/launch_count.py [--steps 40] [--out counts.json]``: the cases
``[784,30,10]`` at m = 10 and ``[784,1024,1024,10]`` at m = 256, plain and with momentum and
dropout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CASES = (([784, 30, 10], 10), ([784, 1024, 1024, 10], 256))
TECHNIQUES = {"plain": {}, "momentum+dropout": {"momentum": 0.9, "dropout": 0.5}}
KINDS = ("gemm", "elementwise", "raw", "take", "graph", "graph nodes")


def stand_in() -> Any:
    """The CuPy stand-in as ``cupy`` (put in its ``null`` mode by :func:`per_step`)."""
    sys.path.insert(0, str(ROOT / "backends" / "cupy" / "tests"))
    import fastbp_fake_cupy

    fake = fastbp_fake_cupy.FakeCuPy()
    sys.modules["cupy"] = fake
    return fake


def per_step(fake: Any, sizes: list[int], m: int, path: str, extra: dict[str, Any],
             steps: int, repeat: int = 7) -> dict[str, Any]:
    """Launches of each kind per step of one epoch of ``steps`` full batches, and host µs per
    step (the best of ``repeat`` epochs)."""
    from fastbp_cupy import CuPyBackend

    import fastbp
    from fastbp.core.epoch import run_epoch

    fake.null = False  # building a backend runs one kernel and checks its result
    be = CuPyBackend("float32", graphs=path == "graph")
    fake.null = True
    be.graph_steps = steps  # one replay per epoch
    net = fastbp.Network(sizes, seed=0, device=be)
    n = steps * m
    rng = np.random.default_rng(0)
    X, labels = rng.random((sizes[0], n), dtype=np.float32), rng.integers(0, sizes[-1], n)
    plan = net.epoch_plan(X, labels, batch_size=m, eta=0.1, **extra)
    with be.activate():
        plan.start(be.index_array(np.arange(n)))
        run_epoch(be, plan)  # builds the programs, captures the graph
        before = dict(fake.calls)
        run_epoch(be, plan)
        counts = {k: (fake.calls.get(k, 0) - before.get(k, 0)) / steps for k in KINDS}
        seconds = float("inf")
        for _ in range(repeat):  # the best of a few: other processes only ever add time
            t0 = time.perf_counter()
            run_epoch(be, plan)
            seconds = min(seconds, time.perf_counter() - t0)
    launches = (counts["graph nodes"] if path == "graph" else
                counts["gemm"] + counts["elementwise"] + counts["raw"] + counts["take"])
    return {"sizes": sizes, "batch_size": m, "path": be.last_epoch_path,
            "techniques": extra, "launches_per_step": launches,
            "from_python_per_step": (counts["graph"] if path == "graph" else launches),
            "host_us_per_step": round(1e6 * seconds / steps, 1), **counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    p.add_argument("--out", default=None, help="write the counts as JSON here")
    args = p.parse_args(argv)
    fake = stand_in()
    rows = []
    print(f"{'network':24} {'m':>4} {'path':6} {'techniques':17} {'launches':>8} "
          f"{'gemm':>5} {'elem':>5} {'raw':>5} {'take':>5} {'host µs':>8}")
    for sizes, m in CASES:
        for path in ("eager", "graph"):
            if path == "graph" and m > 128:
                continue  # eager only: the planner's graphs take batches up to 128
            for name, extra in TECHNIQUES.items():
                row = per_step(fake, sizes, m, path, extra, args.steps)
                rows.append(row)
                print(f"{str(sizes):24} {m:>4} {row['path']:6} {name:17} "
                      f"{row['launches_per_step']:>8g} {row['gemm']:>5g} "
                      f"{row['elementwise']:>5g} {row['raw']:>5g} {row['take']:>5g} "
                      f"{row['host_us_per_step']:>8}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
