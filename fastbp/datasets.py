"""Data sets fastbp trains on: MNIST (:mod:`fastbp.data.mnist`), Fashion-MNIST and KMNIST
(:mod:`fastbp.data.sets`), any of them by name with ``load``, and the book's expanded training
set (:mod:`fastbp.data.expand`)."""

from .data.expand import expand
from .data.mnist import MNIST, Split, load_mnist
from .data.sets import load, load_fashion_mnist, load_kmnist

__all__ = ["MNIST", "Split", "expand", "load", "load_fashion_mnist", "load_kmnist", "load_mnist"]
