"""Where a training step of a narrow network goes, fastbp ``cpu-jit`` beside JAX's compiled step.

For ``[784,30,10]`` at large batches the products are thin (30 or 10 output rows), so the step is
not GEMM-bound in the usual way. This times, per mini-batch and on the same thread count:

- each of the step's GEMMs alone, through NumPy's BLAS (the library ``cpu-jit`` calls), with its
  GFLOP/s: ``Z¹ = W¹X`` (forward), ``W²A¹``, ``W²ᵀΔ²`` (BP2), ``Δ¹Xᵀ`` (BP4), ``Δ²A¹ᵀ``;
- the gather of the batch's rows (``X[idx]``) in NumPy;
- JAX (``jit``) doing the same pieces: the first product, the gather, and its whole step
  (gather, forward, gradient, update: what ``lax.scan`` repeats);
- ``cpu-jit``'s whole step (a one-epoch plan timed per step, its planned strategy).

Usage::

    FASTBP_CACHE=/tmp/profile-plans python benchmarks/profile_narrow.py --batches 1000 10000

(a plan cache of its own: the thread setting is part of the machine's fingerprint).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable


def env_threads(threads: int) -> None:
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")


def best_ms(f: Callable[[], Any], repeat: int = 7, inner: int = 5) -> float:
    f()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        best = min(best, (time.perf_counter() - t) / inner)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="784,30,10")
    args = ap.parse_args()
    env_threads(args.threads)
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import speed_cpu

    sizes = [int(s) for s in args.sizes.split(",")]
    X, Y, source = speed_cpu.load_data(50_000)
    rng = np.random.default_rng(0)
    print(f"{sizes}, {source}, {args.threads} thread(s); ms per step (GFLOP/s)")
    print("| batch | piece | NumPy's BLAS / fastbp | JAX jit |")
    print("|---:|---|---:|---:|")
    for m in args.batches:
        profile(m, sizes, X, Y, rng, jax, jnp, np, speed_cpu)


def profile(m: int, sizes: list[int], X: Any, Y: Any, rng: Any, jax: Any, jnp: Any, np: Any,
            speed_cpu: Any) -> None:
    """The table's rows for batch ``m``."""
    n0, n1, n2 = sizes
    W1 = rng.standard_normal((n1, n0), dtype=np.float32)
    W2 = rng.standard_normal((n2, n1), dtype=np.float32)
    idx = rng.permutation(X.shape[0])[:m]
    xs = np.ascontiguousarray(X[idx])  # (m, n0), rows as cpu-jit gathers them
    A1 = rng.random((n1, m), dtype=np.float32)
    D1 = rng.random((n1, m), dtype=np.float32)
    D2 = rng.random((n2, m), dtype=np.float32)
    out = {k: np.empty(s, np.float32) for k, s in
           (("z1", (m, n1)), ("z2", (n2, m)), ("bp2", (n1, m)), ("g1", (n1, n0)),
            ("g2", (n2, n1)), ("x", (m, n0)))}
    pieces = [
        ("gather X[idx]", 0, lambda: np.take(X, idx, axis=0, out=out["x"]),
         (lambda a, i: jnp.take(a, i, axis=0), "jX", "jidx")),
        ("Z¹ = W¹X", m * n0 * n1, lambda: np.matmul(xs, W1.T, out=out["z1"]),
         (lambda a, w: a @ w.T, "jxs", "jW1")),
        ("W²A¹", m * n1 * n2, lambda: np.matmul(W2, A1, out=out["z2"]), None),
        ("W²ᵀΔ² (BP2)", m * n1 * n2, lambda: np.matmul(W2.T, D2, out=out["bp2"]), None),
        ("Δ¹Xᵀ (BP4)", m * n0 * n1, lambda: np.matmul(D1, xs, out=out["g1"]),
         (lambda d, a: d @ a, "jD1", "jxs")),
        ("Δ²A¹ᵀ", m * n1 * n2, lambda: np.matmul(D2, A1.T, out=out["g2"]), None),
    ]
    jX, jidx, jxs = jnp.asarray(X), jnp.asarray(idx.astype(np.int32)), jnp.asarray(xs)
    on = {"jX": jX, "jidx": jidx, "jxs": jxs, "jW1": jnp.asarray(W1), "jD1": jnp.asarray(D1)}
    for name, macs, numpy_f, jax_f in pieces:
        t = best_ms(numpy_f)
        rate = f" ({2 * macs / t / 1e6:.0f})" if macs else f" ({xs.nbytes / t / 1e6:.1f} GB/s)"
        if jax_f is not None:  # the inputs as arguments: nothing folded at compile time
            jf, a, b = jax.jit(jax_f[0]), on[jax_f[1]], on[jax_f[2]]
            tj = best_ms(lambda jf=jf, a=a, b=b: jf(a, b).block_until_ready())
            jrate = f" ({2 * macs / tj / 1e6:.0f})" if macs else \
                f" ({xs.nbytes / tj / 1e6:.1f} GB/s)"
            jcell = f"{tj:.3f}{jrate}"
        else:
            jcell = ""
        print(f"| {m} | {name} | {t:.3f}{rate} | {jcell} |", flush=True)
    step_flops = 2 * 3 * m * (n0 * n1 + n1 * n2)
    jax_step = jax.jit(speed_cpu._jax_step_fn(m)[2])
    params = speed_cpu._jax_params(jnp, sizes)
    jY = jnp.asarray(Y)
    tj = best_ms(lambda: jax.block_until_ready(jax_step(params, jX, jY, jidx)))
    steps = max(1, 50_000 // m)
    run = speed_cpu.SETUPS["cpu-jit"](sizes, m, X[: steps * m], Y[: steps * m])
    order = rng.permutation(steps * m)
    run(order)
    t = best_ms(lambda: run(order), repeat=3, inner=1) / steps
    print(f"| {m} | whole step | {t:.3f} ({step_flops / t / 1e6:.0f}) | "
          f"{tj:.3f} ({step_flops / tj / 1e6:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
