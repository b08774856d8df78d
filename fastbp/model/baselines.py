"""The benchmark table of the book's chapter 1: random guessing, the average-darkness classifier
and a trained network, scored on the same test set.

Average darkness (the book's ``mnist_average_darkness.py``): the darkness of an image is the sum
of its pixels, ``D(x) = Σ_k x_k``. For each digit ``d`` take the mean darkness of its training
images, ``D̄_d``; guess the digit whose mean is closest, ``argmin_d |D(x) − D̄_d|``. On the MNIST
test set, with means from the book's 50,000 training images, it gets 2,225 of 10,000 right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.records import Evaluation
from ..core.validate import check_labels
from .evaluation import evaluate, score

if TYPE_CHECKING:
    from .network import Network

BOOK = {"random guess": 0.10, "average darkness": 0.2225}
"""Accuracy the book (and the lecture's table) reports for each baseline on the test set."""


def darkness(images: Any) -> np.ndarray:
    """``D(x) = Σ_k x_k`` for each image; ``images`` is ``(N, n_pixels)`` (one image per row),
    summed in float64."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1).sum(axis=1)


class AverageDarkness:
    """Guess the digit whose mean training darkness is closest to the image's darkness."""

    def __init__(self, n_classes: int = 10) -> None:
        self.n_classes = n_classes
        self.means: np.ndarray | None = None

    def fit(self, images: Any, labels: Any) -> AverageDarkness:
        """``D̄_d``: the mean darkness of the training images of each digit ``d``."""
        d = darkness(images)
        lab = check_labels(labels, self.n_classes, len(d))
        counts = np.bincount(lab, minlength=self.n_classes)
        sums = np.bincount(lab, weights=d, minlength=self.n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.means = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
        return self

    def predict(self, images: Any) -> np.ndarray:
        """``argmin_d |D(x) − D̄_d|`` for each image (ties go to the smaller digit)."""
        if self.means is None:
            raise RuntimeError("call fit first")
        return np.abs(darkness(images)[:, None] - self.means[None, :]).argmin(axis=1)


def random_guess(labels: Any, n_classes: int = 10, seed: int | None = 0) -> Evaluation:
    """Guess uniformly at random: expected accuracy ``1 / n_classes``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return score(rng.integers(0, n_classes, len(labels)), labels, n_classes)


def average_darkness(train_images: Any, train_labels: Any, test_images: Any,
                     test_labels: Any) -> Evaluation:
    """The average-darkness classifier fitted on the training images, scored on the test set
    (images one per row, ``(N, n_pixels)``)."""
    model = AverageDarkness().fit(train_images, train_labels)
    return score(model.predict(test_images), test_labels)


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, its evaluation, and the book's figure if it has one."""

    method: str
    evaluation: Evaluation
    book: float | None = None


def table(data: Any, net: Network | None = None, *, seed: int | None = 0,
          network_name: str = "network") -> list[Row]:
    """Random guess, average darkness and (with ``net``) the network, on ``data.test``.

    ``data`` is :func:`fastbp.data.mnist.load_mnist`'s result; darkness means come from
    ``data.train`` (the book's 50,000 images).
    """
    test = data.test
    rows = [
        Row("random guess", random_guess(test.labels, seed=seed), BOOK["random guess"]),
        Row("average darkness", average_darkness(data.train.images, data.train.labels,
                                                 test.images, test.labels),
            BOOK["average darkness"]),
    ]
    if net is not None:
        rows.append(Row(network_name, evaluate(net, test.X, test.labels)))
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as a text table: correct, accuracy, error rate, and the book's accuracy."""
    width = max(len("method"), *(len(r.method) for r in rows))
    counts = [f"{r.evaluation.correct:,} / {r.evaluation.n:,}" for r in rows]
    cw = max(len("correct"), *(len(c) for c in counts))
    lines = [f"{'method':<{width}}  {'correct':>{cw}}  {'accuracy':>9}  {'error':>8}  "
             f"{'book':>8}"]
    for r, count in zip(rows, counts):
        e = r.evaluation
        book = f"{100 * r.book:.2f} %" if r.book is not None else "-"
        lines.append(f"{r.method:<{width}}  {count:>{cw}}  "
                     f"{100 * e.accuracy:>7.2f} %  {100 * e.error_rate:>6.2f} %  {book:>8}")
    return "\n".join(lines)
