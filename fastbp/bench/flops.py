"""What one training step costs in floating-point operations, and what the device can do.

The convention (the usual one, and the benchmark issue's): training one sample through a fully
connected layer with ``W`` weights costs ``2W`` for the feedforward ``W a``, ``2W`` for BP2's
``Wᵀ δ`` and ``2W`` for BP4's ``δ aᵀ``, so ``6 × (number of weights)``, plus the elementwise work
counted below. The first layer's ``Wᵀ δ`` (an error for the input itself) is never computed, so
:func:`needed_flops_per_sample` gives the smaller figure of the work actually needed.

The GEMM peak is the best rate of ``C = A B`` over a few shapes (squares, and a first layer's
shape on MNIST) in the same dtype, through the backend's own ``matmul``: achieved training GFLOP/s
over it is the fraction of the machine's limit.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

# Elementwise operations per unit of a non-input layer and per sample: bias add 1, sigmoid 4,
# σ'(z) = a(1 − a) 2, the hadamard of BP1/BP2 1, BP3's column sum 1.
ELEMENTWISE_PER_UNIT = 9
# And per output unit: a − y 1, the quadratic cost ½ (a − y)² 2.
ELEMENTWISE_PER_OUTPUT = 3
# The SGD update, once per step: W ← W − (η/m) ∇W is 2 per weight and per bias.
UPDATE_PER_PARAMETER = 2


def weight_count(sizes: Sequence[int]) -> int:
    """``Σ_l n_l n_{l-1}``: the number of weights (not biases)."""
    return sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))


def parameter_count(sizes: Sequence[int]) -> int:
    """Weights and biases."""
    return weight_count(sizes) + sum(sizes[1:])


def elementwise_flops_per_sample(sizes: Sequence[int], batch_size: int) -> float:
    """The non-GEMM work per sample, the SGD update spread over the ``batch_size`` samples."""
    units = sum(sizes[1:])
    update = UPDATE_PER_PARAMETER * parameter_count(sizes) / batch_size
    return ELEMENTWISE_PER_UNIT * units + ELEMENTWISE_PER_OUTPUT * sizes[-1] + update


def flops_per_sample(sizes: Sequence[int], batch_size: int) -> float:
    """Training FLOPs per sample: ``6 × weights`` plus the elementwise work."""
    return 6.0 * weight_count(sizes) + elementwise_flops_per_sample(sizes, batch_size)


def needed_flops_per_sample(sizes: Sequence[int], batch_size: int) -> float:
    """As :func:`flops_per_sample`, without the first layer's ``Wᵀ δ`` that no one computes."""
    return flops_per_sample(sizes, batch_size) - 2.0 * sizes[0] * sizes[1]


def default_gemm_size(backend: Any) -> int:
    """A square size that keeps the GEMM busy for tens of milliseconds on this kind of device."""
    return 2048 if getattr(backend, "kind", "cpu") == "cpu" else 8192


def peak_shapes(n: int) -> list[tuple[int, int, int]]:
    """The GEMMs the peak is the best of, ``(rows, inner, cols)``: squares of side ``n`` and
    ``n/2``, and a first layer's shape on MNIST, ``(n/2 × 784) · (784 × n/2)``."""
    half = max(1, n // 2)
    return [(n, n, n), (half, half, half), (half, 784, half)]


def gemm_peak(backend: Any, n: int | None = None, repeats: int = 5,
              shapes: Sequence[tuple[int, int, int]] | None = None) -> dict[str, Any]:
    """The best GFLOP/s of ``C = A B`` in the backend's dtype over several shapes
    (:func:`peak_shapes` of ``n`` unless ``shapes`` is given), each the best of ``repeats`` runs.

    Runs through ``backend.matmul`` with ``out=``, synchronising the device around each run, so
    it is the rate the equations can reach; a best over shapes and runs is robust to a moment of
    load from other processes. Returns ``{"gflops", "n", "shape", "seconds", "dtype", "tried"}``
    (``shape`` is the best one, ``tried`` each shape's figure).
    """
    import numpy as np

    n = n or default_gemm_size(backend)
    rng = np.random.default_rng(0)
    tried = []
    for rows, inner, cols in shapes or peak_shapes(n):
        with backend.activate():
            a = backend.asarray(rng.random((rows, inner)))
            b = backend.asarray(rng.random((inner, cols)))
            c = backend.empty((rows, cols))
            backend.matmul(a, b, out=c)  # warm up: threads, kernels, caches
            backend.synchronize()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                backend.matmul(a, b, out=c)
                backend.synchronize()
                best = min(best, time.perf_counter() - t0)
            del a, b, c
        tried.append({"shape": [rows, inner, cols], "seconds": best,
                      "gflops": 2.0 * rows * inner * cols / best / 1e9})
    top = max(tried, key=lambda t: t["gflops"])
    return {"gflops": top["gflops"], "n": n, "shape": top["shape"],
            "seconds": top["seconds"], "dtype": backend.dtype,
            "tried": [{"shape": t["shape"], "gflops": round(t["gflops"], 2)} for t in tried]}


def layer_flops_per_sample(layers: Sequence[Any]) -> float:
    """Training FLOPs per sample of a layer stack's products: each layer's ``W·a`` costs
    ``2·|W|`` per output position (``oh·ow`` of a conv layer, 1 of a fully connected one),
    training three times that (forward, ``∂C/∂W``, ``∂C/∂a``), the first layer's ``∂C/∂a``
    left out."""
    total = 0.0
    for i, layer in enumerate(layers):
        size = 1
        for d in layer.param_shapes()[0]:
            size *= int(d)
        positions = 1
        for d in getattr(layer, "conv_shape", (1,)):
            positions *= int(d)
        total += 2.0 * size * positions * (2 if i == 0 else 3)
    return total
