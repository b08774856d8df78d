"""Real MNIST: one epoch of ``[784, 30, 10]`` (quadratic cost, mini-batches of 10, η = 3.0, the
50,000 training images) reaches 90 % test accuracy. The book's full 30-epoch runs are in
``benchmarks/results/book``, not here.

The seed is fixed. With the book's N(0, 1) init, one epoch sits on the edge of 90 %: over seeds
0–9 it gave 81.4–90.8 % here, and a change in rounding (another BLAS, a fused kernel) moves a
given seed by a few tenths. With ``init="scaled"`` (weights / sqrt(n_in), the book's chapter 3)
it gave 93.2–94.1 % over the same seeds, so the 90 % test uses that init, and the book's own
init is held to a bound it clears on every seed tried but one.
"""

from __future__ import annotations

import fastbp


def one_epoch(mnist, init):
    net = fastbp.Network([784, 30, 10], seed=3, init=init)
    history = net.train(mnist.train.X, mnist.train.labels, epochs=1, batch_size=10, eta=3.0,
                        test=(mnist.test.X, mnist.test.labels))
    return net, history[0]


def test_one_epoch_reaches_90_percent(mnist):
    net, record = one_epoch(mnist, "scaled")
    assert record.correct >= 9_000, f"{record.correct} / 10000 after one epoch"
    assert net.count_correct(mnist.test.X, mnist.test.labels) == record.correct
    assert net.accuracy(mnist.validation.X, mnist.validation.labels) >= 0.90


def test_one_epoch_with_the_books_init(mnist):
    _, record = one_epoch(mnist, "standard")
    assert record.correct >= 8_500, f"{record.correct} / 10000 after one epoch"
