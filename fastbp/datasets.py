"""Data sets fastbp trains on: ``load_mnist`` (see :mod:`fastbp.data.mnist`)."""

from .data.mnist import MNIST, Split, load_mnist

__all__ = ["MNIST", "Split", "load_mnist"]
