"""A short training run of the ``cuda`` device for ``compute-sanitizer``: the graph path and the
eager path (each with a last partial batch), in float32 and float64, a few steps each, plain and
with momentum, L1 and dropout (the velocity and mask kernels).

``--no-pool`` makes CuPy allocate every array with its own ``cudaMalloc``, so memcheck knows the
bounds of each buffer (inside CuPy's pool an overrun lands in a neighbour unseen).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

TECHNIQUES = {"momentum": 0.9, "l1": 0.5, "dropout": 0.5}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-pool", action="store_true", help="one cudaMalloc per array")
    p.add_argument("--samples", type=int, default=53, help="samples per epoch")
    p.add_argument("--dtypes", default="float32,float64")
    args = p.parse_args(argv)
    import cupy

    if args.no_pool and hasattr(cupy.cuda, "set_allocator"):
        cupy.cuda.set_allocator(None)
    from fastbp_cupy import CuPyBackend

    import fastbp

    rng = np.random.default_rng(0)
    sizes = [784, 30, 10]
    X, labels = rng.random((784, args.samples)), rng.integers(0, 10, args.samples)
    for dtype in args.dtypes.split(","):
        for graphs in (True, False):
            be = CuPyBackend(dtype=dtype, graphs=graphs)
            net = fastbp.Network(sizes, dtype=dtype, seed=1, device=be)
            for m, extra in ((10, {}), (7, {}), (10, TECHNIQUES), (7, TECHNIQUES)):
                h = net.train(X, labels, epochs=1, batch_size=m, eta=3.0, test=(X, labels),
                              **extra)
                print(f"{dtype} graphs={graphs} m={m} {extra or 'plain'}: path "
                      f"{be.last_epoch_path}, cost {h[0].cost:.6f}, accuracy "
                      f"{h[0].accuracy:.3f}", flush=True)
                if not np.isfinite(h[0].cost):
                    return 1
    cupy.cuda.Device().synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
