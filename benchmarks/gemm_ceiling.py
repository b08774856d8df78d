"""How fast a training step's products alone run: the ceiling a whole step can reach.

One SGD step of ``--sizes`` at mini-batch ``m`` makes its GEMMs in the sample-major layout
``cpu-jit`` uses (``A^l`` ``(m, n_l)``, ``W^l`` ``(n_l, n_{l-1})``): the feedforward
``Z^l = A^{l-1} (W^l)ᵀ``, BP2's ``Δ^{l+1} W^{l+1}`` (down to layer 2) and BP4's
``(Δ^l)ᵀ A^{l-1}``. Here they run back to back through NumPy's BLAS, nothing else between them,
and the best of ``--repeat`` such steps is printed beside the machine's square sgemm rate (2048³,
as ``speed_cpu.py`` measures it): a step that does σ, the bias sums and the gather too cannot
beat this figure with the same BLAS library::

    python benchmarks/gemm_ceiling.py --sizes 784,1024,1024,10 --batches 256 1024
    python benchmarks/gemm_ceiling.py --library mkl   # through the CBLAS cpu-jit calls
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def step_products(sizes: list[int], m: int, library: str | None = None
                  ) -> tuple[Callable[[], None], int]:
    """The step's GEMMs as one callable, and their FLOPs: through NumPy, or with ``library``
    through the CBLAS ``cpu-jit`` calls (:func:`fastbp.devices.cpu.load_cblas`), column-major
    as its kernels call it."""
    rng = np.random.default_rng(0)
    acts = [rng.random((m, n), dtype=np.float32) for n in sizes]
    ws = [rng.random((sizes[i + 1], sizes[i]), dtype=np.float32) for i in range(len(sizes) - 1)]
    ds = [rng.random((m, n), dtype=np.float32) for n in sizes[1:]]
    zs = [np.empty((m, n), np.float32) for n in sizes[1:]]
    back = [np.empty((m, n), np.float32) for n in sizes[1:-1]]
    grads = [np.empty_like(w) for w in ws]
    layers = len(ws)

    def run() -> None:
        for i in range(layers):
            np.matmul(acts[i], ws[i].T, out=zs[i])  # feedforward
        for i in range(layers - 1, 0, -1):
            np.matmul(ds[i], ws[i], out=back[i - 1])  # BP2's product
        for i in range(layers):
            np.matmul(ds[i].T, acts[i], out=grads[i])  # BP4

    if library is not None:
        from fastbp.devices.cpu import cblas

        lib = cblas.load(library)
        if lib is None:
            raise SystemExit(f"no CBLAS library {library} here")
        gemm = cblas.FortranGemm(lib, np.dtype(np.float32))

        def run() -> None:  # the transposes are column-major views of the row-major arrays
            for i in range(layers):  # Zᵀ = W Aᵀ
                gemm(1.0, ws[i].T, acts[i].T, 0.0, zs[i].T, 1, 0)
            for i in range(layers - 1, 0, -1):  # (Δ W)ᵀ = Wᵀ Δᵀ
                gemm(1.0, ws[i].T, ds[i].T, 0.0, back[i - 1].T)
            for i in range(layers):  # (Δᵀ A)ᵀ = Aᵀ Δ
                gemm(1.0, acts[i].T, ds[i].T, 0.0, grads[i].T, 0, 1)
    pairs = [sizes[i] * sizes[i + 1] for i in range(layers)]
    flops = 2 * m * (2 * sum(pairs) + sum(pairs[1:]))
    return run, flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="784,1024,1024,10")
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--library", choices=["mkl", "openblas"],
                   help="call this CBLAS directly, as cpu-jit does (default: NumPy's matmul)")
    args = p.parse_args()
    from speed_cpu import _cpu_model, _timed, sgemm_peak

    sizes = [int(s) for s in args.sizes.split(",")]
    first = sgemm_peak()["gflops"]
    steps = []
    for m in args.batches:
        run, flops = step_products(sizes, m, args.library)
        run()
        steps.append((m, flops, min(_timed(run) for _ in range(args.repeat))))
    # the higher of two measurements: the first in a new process once read half the rate
    peak = max(first, sgemm_peak()["gflops"])
    print(f"{_cpu_model()}; sgemm {peak:.0f} GFLOP/s (2048³, the better of {first:.0f} before "
          f"and the figure after); {sizes}; products through "
          f"{args.library or 'NumPy'}")
    for m, flops, best in steps:
        rate = flops / best / 1e9
        print(f"batch {m:5d}: products alone {best * 1e3:7.2f} ms a step, {rate:5.0f} GFLOP/s "
              f"({rate / peak:.0%} of sgemm), at most {m / best:,.0f} samples/s")


if __name__ == "__main__":
    main()
