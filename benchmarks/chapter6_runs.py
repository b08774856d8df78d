"""The book's chapter-6 networks on MNIST with the book's code and hyper-parameters.

``python benchmarks/chapter6_runs.py NET EPOCHS [SEED]`` with ``NET`` one of ``fc`` (FC 100
sigmoid, η 0.1), ``one-conv`` (ConvPool 20×5×5 /2 → FC 100 sigmoid, η 0.1) and
``two-conv-relu`` (two ConvPool layers, FC 100, ReLU, η 0.03, λ 0.1), ``expanded`` (the same
net on the expanded training set) and ``dropout`` (two ConvPool layers, two FC 1000 ReLU layers
and the softmax, each of the three with dropout 0.5, η 0.03, no λ, on the expanded set);
mini-batch 10, ``numpy.random.seed(SEED)`` (default 1), the device in ``$FASTBP_DEVICE``
(default ``auto``). Prints network3's lines and the wall time.

The expanded set is the book's ``expand_mnist.py``: every training image and its four one-pixel
shifts (:func:`fastbp.data.expand.expand`), 250,000 images, shuffled once (here by
``numpy.random.default_rng(SEED)``, the book by Python's ``random.shuffle``), since network3
trains over its data in order.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fastbp.network3 as network3
from fastbp.network3 import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer


def build(which: str, mini_batch_size: int) -> tuple[Network, float, float]:
    """The network ``which`` with its η and λ."""
    if which == "fc":
        return Network([
            FullyConnectedLayer(n_in=784, n_out=100),
            SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size), 0.1, 0.0
    if which == "one-conv":
        return Network([
            ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2)),
            FullyConnectedLayer(n_in=20*12*12, n_out=100),
            SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size), 0.1, 0.0
    convs = [
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                      poolsize=(2, 2), activation_fn=ReLU),
        ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                      poolsize=(2, 2), activation_fn=ReLU)]
    if which == "dropout":
        return Network([
            *convs,
            FullyConnectedLayer(n_in=40*4*4, n_out=1000, activation_fn=ReLU, p_dropout=0.5),
            FullyConnectedLayer(n_in=1000, n_out=1000, activation_fn=ReLU, p_dropout=0.5),
            SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)], mini_batch_size), 0.03, 0.0
    return Network([
        *convs,
        FullyConnectedLayer(n_in=40*4*4, n_out=100, activation_fn=ReLU),
        SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size), 0.03, 0.1


def expanded(training_data: tuple, seed: int) -> tuple:
    """The book's expanded training set, shuffled once by ``seed``."""
    from fastbp.data.expand import expand
    from fastbp.data.mnist import Split

    big = expand(Split(*training_data))
    order = np.random.default_rng(seed).permutation(len(big.labels))
    return np.asarray(big.images)[order], np.asarray(big.labels)[order]


def main() -> None:
    which, epochs = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    training_data, validation_data, test_data = network3.load_data_shared()
    if which in ("expanded", "dropout"):
        training_data = expanded(training_data, seed)
    np.random.seed(seed)
    net, eta, lmbda = build(which, 10)
    t = time.time()
    net.SGD(training_data, epochs, 10, eta, validation_data, test_data, lmbda=lmbda)
    print(f"wall {time.time() - t:.1f} s on {net.backend}, {which}, {epochs} epochs, seed {seed}")


if __name__ == "__main__":
    main()
