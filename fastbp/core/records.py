"""The records training and evaluation produce: plain values, no arrays on a device.

:class:`EpochRecord` is one epoch of training, :class:`History` the list ``train`` returns and a
saved model keeps, :class:`Evaluation` a scored test set (guesses, confusion matrix, mistakes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class EpochRecord:
    """One epoch: mean cost per sample over its mini-batches, test accuracy (with a test set),
    wall seconds including evaluation, and training samples/s (the SGD steps alone)."""

    epoch: int
    cost: float
    accuracy: float | None
    correct: int | None
    seconds: float
    samples_per_s: float


class History(list):
    """The per-epoch records ``train`` returns (a list of :class:`EpochRecord`)."""

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self]

    @property
    def best_accuracy(self) -> float | None:
        accs = [r.accuracy for r in self if r.accuracy is not None]
        return max(accs) if accs else None


def format_record(record: EpochRecord, n_test: int | None = None) -> str:
    """One line per epoch: test accuracy, cost, seconds, samples/s."""
    acc = (f"test {record.correct} / {n_test} ({100 * record.accuracy:.2f} %)"
           if record.accuracy is not None else "no test set")
    return (f"Epoch {record.epoch}: {acc}, cost {record.cost:.4f}, "
            f"{record.seconds:.2f} s, {record.samples_per_s:,.0f} samples/s")


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate` (or :func:`score`): everything is a host NumPy array.

    ``guesses[i]`` and ``labels[i]`` are the guess and the answer for sample ``i`` (column ``i``
    of ``X``); ``misclassified`` holds the indices ``i`` where they differ, in increasing order.
    """

    guesses: np.ndarray
    labels: np.ndarray
    confusion: np.ndarray
    misclassified: np.ndarray

    @property
    def n(self) -> int:
        """How many samples were scored."""
        return int(self.labels.shape[0])

    @property
    def correct(self) -> int:
        """How many guesses are right: the trace of the confusion matrix."""
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        """``correct / n``."""
        return self.correct / self.n

    @property
    def error_rate(self) -> float:
        """``1 − accuracy``: the fraction of samples guessed wrong."""
        return len(self.misclassified) / self.n

    def most_confused(self, k: int = 5) -> list[tuple[int, int, int]]:
        """The ``k`` largest off-diagonal cells as ``(answer, guess, count)``, largest first."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(off, axis=None, kind="stable")[::-1][:k]
        rows, cols = np.unravel_index(flat, off.shape)
        cells = [(int(i), int(j), int(off[i, j])) for i, j in zip(rows, cols)]
        return [c for c in cells if c[2] > 0]

    def summary(self) -> str:
        """One line: correct / n, accuracy and error rate in percent."""
        return (f"{self.correct:,} / {self.n:,} correct: accuracy {100 * self.accuracy:.2f} %, "
                f"error rate {100 * self.error_rate:.2f} %")

    def format_confusion(self) -> str:
        """The confusion matrix as a text table: rows are answers, columns are guesses."""
        k = self.confusion.shape[0]
        width = max(5, len(str(int(self.confusion.max()))) + 1)
        head = "answer\\guess" + "".join(f"{j:>{width}}" for j in range(k))
        rows = [f"{i:>12}" + "".join(f"{int(c):>{width}}" for c in row)
                for i, row in enumerate(self.confusion)]
        return "\n".join([head, *rows])
