"""network3's data: ``load_data_shared`` and ``size``.

A data set is an ``(x, y)`` pair: images ``(N, 784)`` and integer labels ``(N,)`` (the book's
pair of Theano shared variables, as NumPy arrays).
"""

from __future__ import annotations

import gzip
import os
import pickle
from typing import Any

import numpy as np

from ...data.mnist import load_mnist
from ...errors import DataError


def load_data_shared(filename: str | os.PathLike | None = None) -> list[tuple[Any, Any]]:
    """``[training_data, validation_data, test_data]``, each ``(x, y)``.

    Without ``filename`` MNIST comes from fastbp's loader (``$FASTBP_DATA``, the cache, or a
    download); with one, from the book's pickle (``mnist.pkl.gz``, ``mnist_expanded.pkl.gz``).
    """
    if filename is None:
        return [(s.images, s.labels) for s in load_mnist()]
    try:
        with gzip.open(filename, "rb") as f:
            splits = pickle.load(f, encoding="latin1")
    except OSError as exc:
        raise DataError(f"cannot read {os.fspath(filename)!r} ({exc}); give the book's gzipped "
                        f"pickle, or no filename to load MNIST through fastbp") from exc
    return [(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
            for x, y in splits]


def size(data: Any) -> int:
    """The number of samples of an ``(x, y)`` data set."""
    return int(np.shape(data[0])[0])
