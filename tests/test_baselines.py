"""Baselines: random guessing, the book's average-darkness classifier, the table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import fastbp
from fastbp.datasets import Split
from fastbp.model import baselines


def test_average_darkness_by_hand():
    # Digit d's images have darkness about 10 d; a test image goes to the nearest mean.
    train = np.array([[1, 0], [0, 1], [10, 0], [6, 6], [20, 0], [19, 2]], dtype=float)
    labels = np.array([0, 0, 1, 1, 2, 2])
    model = baselines.AverageDarkness(n_classes=3).fit(train, labels)
    assert model.means.tolist() == [1.0, 11.0, 20.5]
    test = np.array([[0, 0], [5, 1], [6, 0.1], [15, 0], [16, 0], [100, 0]])
    # 6 (= 5 + 1) is halfway between 1 and 11: ties go to the smaller digit; 6.1 goes to 1.
    assert model.predict(test).tolist() == [0, 0, 1, 1, 2, 2]


def test_average_darkness_is_the_books_algorithm(rng):
    """Against a transcription of the book's mnist_average_darkness.py."""
    images = rng.random((200, 16))
    labels = rng.integers(0, 10, 200)
    test = rng.random((50, 16))
    from collections import defaultdict

    counts, sums = defaultdict(int), defaultdict(float)
    for image, digit in zip(images, labels):
        counts[digit] += 1
        sums[digit] += sum(image)
    avgs = {d: sums[d] / counts[d] for d in counts}
    want = [min(avgs, key=lambda d: abs(avgs[d] - sum(image))) for image in test]
    got = baselines.AverageDarkness().fit(images, labels).predict(test)
    assert got.tolist() == [int(w) for w in want]


def test_random_guess_is_about_one_in_ten():
    labels = np.arange(100_000) % 10
    e = baselines.random_guess(labels, seed=3)
    assert e.accuracy == pytest.approx(0.1, abs=0.005)
    assert np.array_equal(e.guesses, baselines.random_guess(labels, seed=3).guesses)


def fake_data(rng, n=300):
    """MNIST-shaped data where darkness says something about the digit."""
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, 784)) < (0.05 + 0.02 * labels[:, None])).astype(np.float32)
    split = Split(images, labels)
    return SimpleNamespace(train=split, validation=split, test=split)


def test_the_table(rng):
    data = fake_data(rng)
    net = fastbp.Network([784, 10, 10], seed=1)
    rows = baselines.table(data, net, network_name="my net")
    assert [r.method for r in rows] == ["random guess", "average darkness", "my net"]
    assert [r.book for r in rows] == [0.10, 0.2225, None]
    assert rows[1].evaluation.accuracy > 0.2  # darkness is informative here
    assert rows[2].evaluation.correct == net.count_correct(data.test.X, data.test.labels)
    text = baselines.format_table(rows).splitlines()
    assert text[0].split() == ["method", "correct", "accuracy", "error", "book"]
    assert text[2].startswith("average darkness") and text[2].endswith("22.25 %")
    assert f"{rows[2].evaluation.correct} / 300" in text[3]
    assert len({len(line) for line in text}) == 1  # columns line up
    assert len(baselines.table(data)) == 2


def test_average_darkness_reproduces_the_book_on_mnist(mnist):
    """The book: 2,225 of 10,000 test images right; required within 0.1 % (10 images)."""
    e = baselines.average_darkness(mnist.train.images, mnist.train.labels,
                                   mnist.test.images, mnist.test.labels)
    assert abs(e.correct - 2225) <= 10
    assert e.correct == 2225  # exactly, with darkness summed in float64
    assert e.error_rate == pytest.approx(0.7775, abs=0.001)
