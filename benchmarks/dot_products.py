"""The feedforward's product at few rows: ``cpu-jit``'s dot products against one BLAS call.

``Z = A Wᵀ + bᵀ`` with ``A`` ``(r, k)`` (a mini-batch, one sample a row) and ``W`` ``(n, k)``,
each layer shape of the speed table, on one thread: the dot products
:func:`fastbp_numba.kernels.linear` runs (:func:`~fastbp_numba.kernels.dots` below four rows,
:func:`~fastbp_numba.kernels.dots_fours` from four: register-blocked) against ``linear`` sent to
the GEMM (``small = (0, 0)``), which packs all of ``W`` before it multiplies. Microseconds a
product, best of five runs of many, and the ratio; ``kernels.linear`` takes the dot products up
to ``SMALL_ROWS[0]`` rows (:mod:`fastbp_numba.backend`)::

    python benchmarks/dot_products.py                 # the GEMM library cpu-jit finds
    python benchmarks/dot_products.py --library mkl --dtype float64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fastbp_numba import kernels as K
from numba import njit

from fastbp.devices.cpu import find_cblas, load_cblas
from fastbp.devices.cpu.blas_threads import one_thread

SHAPES = [(30, 784), (10, 30), (100, 784), (10, 100), (1024, 784), (1024, 1024), (10, 1024)]
ROWS = [1, 2, 4, 10, 16, 32, 64, 100]


@njit(nogil=True)
def repeat_dots(w, b, a, r, z, reps):
    for _ in range(reps):
        if r < 4:  # as kernels.linear takes them
            K.dots(w, b, a, r, z)
        else:
            K.dots_fours(w, b, a, r, z)


@njit(nogil=True)
def repeat_gemm(w, b, a, r, z, scal, blas, reps):
    for _ in range(reps):
        K.linear(w, b, a, r, z, scal, (0, 0), blas)


def best_seconds(run, *args) -> float:
    """Seconds a product, the best of five calls of ``run(*args)`` (the last argument is the
    count of products a call makes; the first call compiles and warms up)."""
    run(*args)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        run(*args)
        best = min(best, time.perf_counter() - t0)
    return best / args[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=None, help="mkl or openblas (default: cpu-jit's)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args()
    lib = load_cblas(args.library) if args.library else find_cblas()
    if lib is None:
        raise SystemExit(f"no CBLAS library {args.library or ''} here")
    blas, dt = lib.gemm_for(args.dtype), np.dtype(args.dtype)
    print(f"{lib.name} {lib.version}, {args.dtype}, one thread; µs a product "
          "(dot products / GEMM, GEMM ÷ dot products)")
    print("| n × k | " + " | ".join(f"r = {r}" for r in ROWS) + " |")
    print("|---|" + "---:|" * len(ROWS))
    rng = np.random.default_rng(0)
    with one_thread():
        for n, k in SHAPES:
            w = (rng.random((n, k)) - 0.5).astype(dt)
            b = (rng.random((n, 1)) - 0.5).astype(dt)
            cells = []
            for r in ROWS:
                a = (rng.random((r, k)) - 0.5).astype(dt)
                z = np.empty((r, n), dt)
                scal = np.zeros(4, dt)
                reps = max(1, 30_000_000 // (n * k * r))
                t_dots = best_seconds(repeat_dots, w, b, a, r, z, reps)
                t_gemm = best_seconds(repeat_gemm, w, b, a, r, z, scal, blas, reps)
                cells.append(f"{t_dots * 1e6:.1f} / {t_gemm * 1e6:.1f} ({t_gemm / t_dots:.2f}×)")
            print(f"| {n} × {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
