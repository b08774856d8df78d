"""Does splitting a product change its rounding? The question behind planning from real steps.

The planner's candidates split a step's products differently: ``two-threads`` computes the
feedforward on each half of the batch's rows, ``blas-threads`` leaves the split to the BLAS
library. If each element of a product came out the same however the product is split, every
candidate would give a seed the same numbers, and the planner's trials could be real training
steps. This script asks the BLAS library NumPy uses, for the products of ``cpu-jit``'s step
(sample-major: ``Z = A Wᵀ`` with ``A`` ``(m, k)``, ``W`` ``(n, k)``):

- rows: ``A Wᵀ`` against ``A[:h] Wᵀ`` stacked on ``A[h:] Wᵀ`` (``two-threads``' feedforward);
- units: against ``A W[:j]ᵀ`` beside ``A W[j:]ᵀ`` (a split by neurons);
- update: BP4's ``Δᵀ A`` against its two column blocks (``two-threads``' update);
- threads: the whole product on one BLAS thread against two (``blas-threads``).

Each line counts the shapes whose split product is bit-identical to the whole one::

    python benchmarks/split_rounding.py
"""

from __future__ import annotations

import numpy as np

SHAPES = [(30, 784), (100, 784), (10, 30), (10, 100), (1024, 784), (1024, 1024), (10, 1024)]
BATCHES = [2, 4, 10, 20, 64, 100, 128, 256, 1000]


def main() -> None:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    same = {"rows": 0, "units": 0, "update": 0, "threads": 0}
    differ: dict[str, list[str]] = {k: [] for k in same}
    total = 0
    for n, k in SHAPES:
        for m in BATCHES:
            a = rng.random((m, k), dtype=np.float32) - 0.5
            w = rng.random((n, k), dtype=np.float32) - 0.5
            d = rng.random((m, n), dtype=np.float32) - 0.5
            whole = a @ w.T
            h, j = (m + 1) // 2, n // 2
            with threadpool_limits(limits=1, user_api="blas"):
                one = a @ w.T
            with threadpool_limits(limits=2, user_api="blas"):
                two = a @ w.T
            grad = d.T @ a
            checks = {
                "rows": np.vstack([a[:h] @ w.T, a[h:] @ w.T]),
                "units": np.hstack([a @ w[:j].T, a @ w[j:].T]) if j else whole,
                "update": (np.hstack([d.T @ a[:, : k // 2], d.T @ a[:, k // 2:]]), grad),
                "threads": (one, two),
            }
            total += 1
            for name, got in checks.items():
                x, y = got if isinstance(got, tuple) else (got, whole)
                if np.array_equal(x, y):
                    same[name] += 1
                else:
                    differ[name].append(f"{n}x{k} m={m}")
    for name in same:
        print(f"{name:8s} {same[name]:3d} of {total} shapes bit-identical"
              + (f"; differ: {', '.join(differ[name][:8])}"
                 + (" ..." if len(differ[name]) > 8 else "") if differ[name] else ""))


if __name__ == "__main__":
    main()
