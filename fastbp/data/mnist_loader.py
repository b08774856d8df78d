"""The book's ``mnist_loader``: ``from fastbp import mnist_loader`` for ``import mnist_loader``.

``load_data()`` gives ``(training_data, validation_data, test_data)`` as tuples of
``(images (N, 784), labels (N,))``; ``load_data_wrapper()`` gives lists of ``(x, y)`` pairs of
column vectors, ``y`` one-hot ``(10, 1)`` for training and an integer label otherwise.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..data.mnist import load_mnist
from ..errors import ConfigError


def load_data(path: str | None = None) -> tuple:
    """The three splits as ``(images, labels)`` tuples, like the book's pickled data."""
    data = load_mnist(path)
    return tuple((s.images, s.labels) for s in data)


def vectorized_result(j: int) -> np.ndarray:
    """A ``(10, 1)`` one-hot column with a 1.0 in position ``j``."""
    if isinstance(j, bool) or not isinstance(j, numbers.Integral) or not 0 <= j <= 9:
        raise ConfigError(f"vectorized_result needs a digit 0..9, got {j!r}")
    e = np.zeros((10, 1), dtype=np.float32)
    e[j] = 1.0
    return e


def load_data_wrapper(path: str | None = None) -> tuple[list, list, list]:
    """``(training_data, validation_data, test_data)`` as the book's lists of ``(x, y)`` pairs."""
    tr, va, te = load_mnist(path)
    training_data = [(x.reshape(784, 1), vectorized_result(y)) for x, y in zip(*tr)]
    validation_data = [(x.reshape(784, 1), int(y)) for x, y in zip(*va)]
    test_data = [(x.reshape(784, 1), int(y)) for x, y in zip(*te)]
    return training_data, validation_data, test_data
