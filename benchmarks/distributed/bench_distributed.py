"""Throughput of data-parallel training, and the share of a step spent in the Allreduce.

Run under MPI, one line of JSON per measurement on rank 0's stdout (or ``--out``)::

    OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python benchmarks/distributed/bench_distributed.py

For each network and batch size: samples/s of the best of ``--epochs`` epochs (after a warm-up
epoch), the time a rank spent in the gradient Allreduce divided by the time of the SGD steps
(``comm_share``, which includes waiting for the slower rank), and the cost of the Allreduce
alone on a buffer of the gradient's size (``allreduce_s``, median after a Barrier, so without
load imbalance). ``--sweep`` adds Allreduce times over a range of sizes (the latency and
bandwidth of this machine's MPI), ``--big`` one step of ``[784,4096,4096,10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from fastbp import Network
from fastbp.distributed import train, world

NETS = ([784, 30, 10], [784, 100, 10])
BATCHES = (10, 100, 1000)
BIG = [784, 4096, 4096, 10]


def mnist(samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``samples`` MNIST training images, or random pixels when MNIST is absent."""
    try:
        from fastbp.datasets import load_mnist

        data = load_mnist(download=False)
        return data.train.X[:, :samples], data.train.labels[:samples], "mnist"
    except Exception:  # noqa: BLE001 - timing does not depend on the pixels
        rng = np.random.default_rng(0)
        return rng.random((784, samples)), rng.integers(0, 10, samples), "random"


def allreduce_seconds(comm: Any, count: int, dtype: str, reps: int) -> float:
    """Median seconds of one in-place ``Allreduce(SUM)`` of ``count`` values, each after a
    Barrier (so a rank does not wait for another's compute)."""
    from mpi4py import MPI

    buf = np.ones(count, dtype=dtype)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # warm-up
    times = []
    for _ in range(reps):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t)
    # Every rank reports its median; the slowest is what a step waits for.
    return float(comm.allreduce(statistics.median(times), op=MPI.MAX))


def gradient_count(sizes: list[int]) -> int:
    """Values in the flat buffer (``fastbp.parallel.shard.FlatGradients``): every ``W^l`` and
    ``b^l``, and the cost slot."""
    return sum(n * k + n for k, n in zip(sizes[:-1], sizes[1:])) + 1


def measure(comm: Any, sizes: list[int], batch: int, X: np.ndarray, labels: np.ndarray,
            epochs: int, dtype: str) -> dict[str, Any]:
    net = Network(sizes, seed=1, dtype=dtype)
    warm = min(X.shape[1], max(batch * 20, 1000))
    train(net, X[:, :warm], labels[:warm], epochs=1, batch_size=batch, eta=0.1)
    h = train(net, X, labels, epochs=epochs, batch_size=batch, eta=0.1)
    best = max(range(len(h)), key=lambda i: h[i].samples_per_s)
    steps = -(-X.shape[1] // batch)
    count = gradient_count(sizes)
    reps = max(5, min(300, int(2e8 // (count * 8))))
    return {
        "sizes": sizes, "batch_size": batch, "samples": int(X.shape[1]),
        "samples_per_s": h[best].samples_per_s,
        "step_s": h.step_seconds[best] / steps,
        "comm_share": h.comm_share[best],
        "comm_s_per_step": h.comm_seconds[best] / steps,
        "gradient_bytes": count * np.dtype(dtype).itemsize,
        "allreduce_s": allreduce_seconds(comm, count, dtype, reps),
        "reduction": h.reduction,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--label", default="")
    p.add_argument("--out", default=None, help="append the JSON lines to this file")
    p.add_argument("--sweep", action="store_true", help="Allreduce time over message sizes")
    p.add_argument("--big", action="store_true", help=f"one step of {BIG} too")
    args = p.parse_args(argv)
    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    X, labels, source = mnist(args.samples)
    common = {"label": args.label, "ranks": size, "dtype": args.dtype, "data": source,
              "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_avg_1min": os.getloadavg()[0]}
    rows = []
    for sizes in NETS:
        for batch in BATCHES:
            rows.append({"kind": "train", **common,
                         **measure(comm, sizes, batch, X, labels, args.epochs, args.dtype)})
            if rank == 0:
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.big:
        n = 64 * 6
        rows.append({"kind": "train", **common,
                     **measure(comm, BIG, 64, X[:, :n], labels[:n], 1, args.dtype)})
    if args.sweep and size > 1:
        for count in (1, 256, 16_384, 262_144, 1_048_576, 4_194_304, 20_000_000):
            reps = max(5, min(300, int(4e8 // (count * 4))))
            rows.append({"kind": "allreduce", **common, "count": count,
                         "bytes": count * np.dtype(args.dtype).itemsize,
                         "allreduce_s": allreduce_seconds(comm, count, args.dtype, reps)})
    if rank == 0:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
