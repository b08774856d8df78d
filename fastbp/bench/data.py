"""The data the benchmarks train on: MNIST-shaped synthetic data, or the first MNIST images."""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..errors import FastbpError


class BenchError(FastbpError):
    """A benchmark that cannot be set up as asked."""


@functools.lru_cache(maxsize=8)
def synthetic_mnist(n: int, dtype: str = "float32", n_in: int = 784, n_out: int = 10,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-shaped data: ``X (n_in, n)`` with about 19 % of the pixels lit (uniform in [0, 1],
    the rest 0, as in MNIST), integer labels ``(n,)`` and one-hot ``Y (n_out, n)``.

    ``X`` is stored sample-major (Fortran order as ``(n_in, n)``), so ``Network.train`` takes it
    without a copy. The arrays are cached: treat them as read-only.
    """
    rng = np.random.default_rng(seed)
    images = rng.random((n, n_in), dtype=np.float64)
    images[rng.random((n, n_in)) >= 0.19] = 0.0
    return _finish(images.astype(dtype), rng.integers(0, n_out, n), n_out)


@functools.lru_cache(maxsize=4)
def mnist_data(n: int, dtype: str = "float32", path: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` MNIST training images (repeated when ``n`` exceeds 50,000), as
    :func:`synthetic_mnist` returns them."""
    from ..data.mnist import load_mnist

    train = load_mnist(path).train
    idx = np.arange(n) % len(train)
    return _finish(np.asarray(train.images[idx], dtype=dtype), np.asarray(train.labels)[idx], 10)


def _finish(images: np.ndarray, labels: np.ndarray, n_out: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(labels)
    onehot = np.zeros((n, n_out), dtype=images.dtype)
    onehot[np.arange(n), labels] = 1.0
    X, Y = np.ascontiguousarray(images).T, onehot.T
    for a in (X, Y, labels):
        a.flags.writeable = False
    return X, labels.astype(np.int64), Y


DataSource = Callable[[int, str, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def data_source(source: str = "synthetic", path: str | None = None) -> DataSource:
    """``(n, dtype, n_in, n_out) -> (X, labels, Y)`` for ``synthetic`` or ``mnist`` data."""
    if source == "synthetic":
        return lambda n, dtype, n_in=784, n_out=10: synthetic_mnist(n, dtype, n_in, n_out)
    if source == "mnist":
        def mnist(n: int, dtype: str, n_in: int = 784, n_out: int = 10) -> Any:
            if (n_in, n_out) != (784, 10):
                raise BenchError(f"MNIST has 784 inputs and 10 classes; sizes {n_in}→{n_out} "
                                 "need --data synthetic")
            return mnist_data(n, dtype, path)

        return mnist
    raise BenchError(f"--data must be synthetic or mnist, got {source!r}")
