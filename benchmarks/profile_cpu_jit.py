"""Where a step of the ``cpu-jit`` epoch spends its time: gather, feedforward GEMMs, sigmoid,
BP1 + BP2, update (BP3 + BP4 + SGD), per mini-batch, in microseconds.

Each stage is timed as the difference between two compiled epochs that stop after it, so the
figures add up to the whole step (on a busy machine a difference can come out negative: take
the best of several runs). This is the epoch's one-thread form, with the gather inline and BLAS
on one thread (the BLAS :mod:`fastbp.devices.cpu.cblas` picks): what each core does when the
epoch gathers ahead on another core or splits its steps between two threads. Usage::

    python benchmarks/profile_cpu_jit.py --sizes 784,30,10 --batches 1,10,100,1000
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
from fastbp_numba import kernels as K
from fastbp_numba.backend import SMALL_ROWS as SMALL
from numba import njit

from fastbp.devices.cpu import cblas
from fastbp.devices.cpu.blas_threads import one_thread

STAGES = ("gather", "feedforward GEMMs", "sigmoid", "BP1 + BP2", "update")


@njit(nogil=True)
def partial_epoch(weights, biases, xs, ys, order, m, eta, xbuf, ybuf, acts, deltas, scal, stage,
                  blas):
    """:func:`fastbp_numba.epoch.sgd_epoch` (quadratic cost) stopped after ``stage``."""
    saved = K.get_mxcsr()
    K.set_mxcsr(saved | np.uint32(K.FTZ_DAZ))
    n = order.shape[0]
    kinds = np.zeros(len(weights), np.int64)  # every layer sigmoid
    total = 0.0
    for start in range(0, n, m):
        r = min(m, n - start)
        K.gather(xs, order, start, r, xbuf)
        K.gather(ys, order, start, r, ybuf)
        if stage == 0:
            continue
        if stage == 1:
            for l in range(len(weights)):
                a_prev = xbuf if l == 0 else acts[l - 1]
                K.linear(weights[l], biases[l], a_prev, r, acts[l], scal, SMALL, blas)
            continue
        K.forward(weights, biases, xbuf, r, acts, deltas, kinds, scal, SMALL, blas)
        if stage == 2:
            continue
        total += K.deltas_of(weights, ybuf, r, acts, deltas, K.QUADRATIC, kinds, scal, SMALL, blas)
        if stage == 3:
            continue
        for l in range(len(weights)):
            a_prev = xbuf if l == 0 else acts[l - 1]
            K.sgd_update(weights[l], biases[l], deltas[l], a_prev, r, eta / r, 1.0, scal, SMALL,
                         blas)
    K.set_mxcsr(saved)
    return total


def profile(sizes: list[int], m: int, X: np.ndarray, Y: np.ndarray, repeat: int) -> list[float]:
    """Microseconds per step spent in each of :data:`STAGES` (best of ``repeat``)."""
    rng = np.random.default_rng(0)
    dt = np.float32
    n = X.shape[0]
    lib = cblas.find()
    blas = None if lib is None else lib.gemm_for("float32")
    ends = []
    for stage in range(len(STAGES)):
        ws = tuple((rng.standard_normal((k2, k1)) / np.sqrt(k1)).astype(dt)
                   for k1, k2 in zip(sizes[:-1], sizes[1:]))
        bs = tuple(rng.standard_normal((k, 1)).astype(dt) for k in sizes[1:])
        bufs = (np.empty((m, sizes[0]), dt), np.empty((m, sizes[-1]), dt),
                tuple(np.empty((m, k), dt) for k in sizes[1:]),
                tuple(np.empty((m, k), dt) for k in sizes[1:]), np.empty(4, dt))
        best = float("inf")
        for _ in range(repeat + 1):  # the first one compiles
            order = rng.permutation(n)
            t = time.perf_counter()
            partial_epoch(ws, bs, X, Y, order, m, 3.0, *bufs, stage, blas)
            best = min(best, time.perf_counter() - t)
        ends.append(best / (n / m) * 1e6)
    return [ends[0]] + [b - a for a, b in zip(ends, ends[1:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="784,30,10")
    p.add_argument("--batches", default="1,10,100,1000")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--blas-threads", action="store_true",
                   help="BLAS on its own threads (the blas-threads strategy), not on one")
    args = p.parse_args()
    from speed_cpu import load_data

    X, Y, source = load_data(args.n)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{sizes}, {source}; BLAS {cblas.description()}; µs per step")
    print("| batch | " + " | ".join(STAGES) + " | step | samples/s |")
    print("|---:|" + "---:|" * (len(STAGES) + 2))
    for m in (int(b) for b in args.batches.split(",")):
        with contextlib.nullcontext() if args.blas_threads else one_thread():
            parts = profile(sizes, m, X, Y, args.repeat)
        step = sum(parts)
        print(f"| {m} | " + " | ".join(f"{x:.1f}" for x in parts)
              + f" | {step:.1f} | {m / step * 1e6:,.0f} |")


if __name__ == "__main__":
    main()
