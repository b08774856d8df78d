"""The book's expanded training set (``expand_mnist.py``): every image, then four copies shifted
by one pixel (down, up, right, left) with the row or column shifted in filled with zeros, each
with the image's label. 50,000 MNIST training images become 250,000."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .mnist import Split

SHIFTS = ((1, 0), (-1, 0), (1, 1), (-1, 1))
"""``(d, axis)`` of each copy, as ``expand_mnist.py`` lists them: ``d`` pixels along ``axis``
(0: down/up, 1: right/left)."""


def shift(images: np.ndarray, d: int, axis: int, side: int = 28) -> np.ndarray:
    """``images`` ``(N, side²)`` moved ``d`` pixels along ``axis`` of each ``side × side`` image;
    what moves in is zero (``np.roll`` with the wrapped row or column cleared)."""
    square = images.reshape(len(images), side, side)
    out = np.zeros_like(square)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    src[axis + 1] = slice(0, side - d) if d > 0 else slice(-d, side)
    dst[axis + 1] = slice(d, side) if d > 0 else slice(0, side + d)
    out[tuple(dst)] = square[tuple(src)]
    return out.reshape(len(images), side * side)


def expand(split: Split, side: int = 28) -> Split:
    """``split`` and its four one-pixel shifts, ``5 N`` images: image ``i`` is row ``5i`` of the
    result, its shifts rows ``5i + 1 … 5i + 4`` (training shuffles them anyway)."""
    images, labels = np.asarray(split.images), np.asarray(split.labels)
    if images.ndim != 2 or images.shape[1] != side * side or len(labels) != len(images):
        raise ShapeError(f"expand needs images (N, {side * side}) and N labels, got "
                         f"{images.shape} and {labels.shape}")
    copies = [images, *(shift(images, d, axis, side) for d, axis in SHIFTS)]
    out = np.stack(copies, axis=1).reshape(5 * len(images), side * side)
    return Split(out, np.repeat(labels, 5))
