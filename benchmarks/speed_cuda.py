"""GPU training throughput of the ``cuda`` device: the eager step against the captured graph.

Every figure is training samples/s for one epoch of mini-batch SGD on MNIST-shaped random data
(sigmoid layers, quadratic cost, ``eta`` 3.0, shuffled, float32), the best of ``--repeat`` epochs
after a warm-up epoch (which compiles the kernels and captures the graphs). The clock stops after
the device has finished: reading the epoch's cost waits for it (``Network.train`` does that).

Usage, on a machine with a GPU and ``fastbp-cupy[cuda12]``::

    python benchmarks/speed_cuda.py --out benchmarks/results/speed-cuda/h100.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

CASES = [([784, 30, 10], 10), ([784, 30, 10], 100), ([784, 30, 10], 1000),
         ([784, 100, 10], 10), ([784, 1024, 1024, 10], 1000)]


def epoch_rate(sizes: list[int], m: int, graphs: bool, n: int, repeat: int) -> dict:
    from fastbp_cupy import CuPyBackend

    import fastbp

    rng = np.random.default_rng(0)
    X = rng.random((sizes[0], n), dtype=np.float32)
    labels = rng.integers(0, sizes[-1], n)
    be = CuPyBackend(graphs=graphs)
    net = fastbp.Network(sizes, seed=1, device=be)
    net.train(X, labels, epochs=1, batch_size=m, eta=3.0)  # warm-up: compile, capture
    best = 0.0
    for _ in range(repeat):
        be.synchronize()
        t0 = time.perf_counter()
        net.train(X, labels, epochs=1, batch_size=m, eta=3.0)
        best = max(best, n / (time.perf_counter() - t0))
    return {"sizes": sizes, "batch_size": m, "graphs": graphs, "path": be.last_epoch_path,
            "graph_error": be.graph_error, "samples_per_s": round(best)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="samples per epoch")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    import fastbp

    try:
        info = fastbp.devices.resolve("cuda").describe()
    except fastbp.DeviceError as exc:
        print(f"speed_cuda: {exc}", file=sys.stderr)
        return 2
    rows = []
    for sizes, m in CASES:
        for graphs in (False, True):
            row = epoch_rate(sizes, m, graphs, args.n, args.repeat)
            rows.append(row)
            print(f"{str(sizes):24} m={m:<5} {row['path']:5} {row['samples_per_s']:>12,} "
                  "samples/s", flush=True)
    if args.out:
        import os

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"device": info, "n": args.n, "results": rows}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
