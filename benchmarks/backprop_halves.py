"""One backprop of the book's two-conv net, ms per mini-batch, three ways on ``cpu-jit``: as two
halves on two cores (what ``Stack.backprop`` does from a batch of
:data:`fastbp_numba.halves.MIN_BATCH` on), as one matrix on BLAS's two threads, and as one
matrix on one thread; and one half alone, for the cost of running beside the other. The halves
are timed at every batch, also below the one where ``Stack.backprop`` starts taking them. Usage::

    python benchmarks/backprop_halves.py 10 32 40 50 100 200
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import numpy as np
from fastbp_numba import halves

from fastbp.core.layers import Stack
from fastbp.devices import registry
from fastbp.devices.cpu import one_thread
from fastbp.layers import ConvPool, FullyConnected, Softmax


def best_ms(f: Callable[[], Any], n: int = 30) -> float:
    for _ in range(5):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


def main(batches: list[int]) -> None:
    be = registry.resolve("cpu-jit", "float32")
    layers = [ConvPool((20, 1, 5, 5), (1, 28, 28), (2, 2), "relu"),
              ConvPool((40, 20, 5, 5), (20, 12, 12), (2, 2), "relu"),
              FullyConnected(640, 100, "relu"), Softmax(100, 10)]
    rng = np.random.default_rng(0)
    params = [tuple(be.asarray(p) for p in layer.init(rng)) for layer in layers]
    print("| batch | two halves | one matrix, BLAS threads | one matrix, one thread | "
          "one half alone |")
    print("|---:|---:|---:|---:|---:|")
    for m in batches:
        print(row(be, layers, params, m, rng), flush=True)


def row(be: Any, layers: list, params: list, m: int, rng: np.random.Generator) -> str:
    """The table's row for a batch of ``m``."""
    x = rng.random((784, m), dtype=np.float32)
    y = np.zeros((10, m), np.float32)
    y[rng.integers(0, 10, m), np.arange(m)] = 1
    stack = Stack(be, layers)
    split = best_ms(lambda: halves.backprop(stack, params, x, y, None))
    threads = best_ms(lambda: stack.backprop_here(params, x, y))
    h = (m + 1) // 2
    xa, ya = np.ascontiguousarray(x[:, :h]), np.ascontiguousarray(y[:, :h])
    with one_thread():
        one = best_ms(lambda: stack.backprop_here(params, x, y))
        half = best_ms(lambda: stack.backprop_here(params, xa, ya))
    return f"| {m} | {split:.2f} | {threads:.2f} | {one:.2f} | {half:.2f} |"

if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 32, 40, 50, 100, 200])
