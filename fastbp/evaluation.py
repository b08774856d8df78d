"""How good a classifier is on a labelled set: accuracy, error rate, confusion matrix, mistakes.

The network's guess for a sample ``x`` is ``argmax_j a^L_j(x)``. The confusion matrix ``C`` has
one row per answer (the true digit) and one column per guess: ``C[i, j]`` counts the samples of
digit ``i`` read as ``j``, so the diagonal holds the correct ones and ``Σ_ij C[i, j] = N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, ShapeError
from .validate import check_batch, check_count, check_labels

if TYPE_CHECKING:
    from .network import Network


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


def score(guesses: Any, labels: Any, n_classes: int = 10) -> Evaluation:
    """An :class:`Evaluation` of given guesses against the answers ``labels`` (both integers)."""
    labels = np.asarray(labels).reshape(-1)
    guesses = np.asarray(guesses).reshape(-1)
    if guesses.shape != labels.shape:
        raise ShapeError(f"{guesses.shape[0]} guesses for {labels.shape[0]} labels")
    if labels.shape[0] == 0:
        raise ShapeError("nothing to evaluate: no samples")
    labels = check_labels(labels, n_classes, labels.shape[0], "labels")
    guesses = check_labels(guesses, n_classes, guesses.shape[0], "guesses")
    confusion = np.bincount(labels * n_classes + guesses, minlength=n_classes * n_classes)
    return Evaluation(
        guesses=guesses, labels=labels,
        confusion=confusion.reshape(n_classes, n_classes).astype(np.int64),
        misclassified=np.flatnonzero(guesses != labels),
    )


def evaluate(net: Network, X: Any, labels: Any, *, chunk: int = 10_000) -> Evaluation:
    """Score ``net`` on ``X`` ``(sizes[0], N)`` (one sample per column) against ``labels``.

    ``labels`` are ``N`` integers or one-hot columns ``(sizes[-1], N)``. The data move to the
    network's device once and are fed forward ``chunk`` columns at a time.
    """
    from .network import Network

    if not isinstance(net, Network):
        raise ConfigError(f"evaluate needs a fastbp.Network, got {type(net).__name__}")
    chunk = check_count("chunk", chunk)
    return score(guesses(net, X, chunk=chunk),
                 check_labels(labels, net.sizes[-1], int(np.shape(X)[1])), net.sizes[-1])


def guesses(net: Network, X: Any, *, chunk: int = 10_000) -> np.ndarray:
    """``argmax_j a^L_j`` for every column of ``X``, as host integers."""
    be = net.backend
    X = check_batch(X, net.sizes[0], "X")
    with be.activate():
        out = [be.to_numpy(be.argmax_columns(a)) for a in outputs_in_chunks(net, X, chunk)]
    return np.concatenate(out).astype(np.int64)


def outputs_in_chunks(net: Network, X: Any, chunk: int = 10_000):
    """Yield ``a^L`` (device arrays, ``(sizes[-1], ≤ chunk)``) for consecutive column blocks of
    ``X``; each block is valid until the next one is produced. Call inside ``be.activate()``."""
    from .training import Evaluator

    be = net.backend
    n = int(np.shape(X)[1])
    ev = Evaluator(be, net.sizes, net._samples_major(X), be.index_array(np.zeros(n, np.int64)),
                   chunk=chunk)
    for start in range(0, n, ev.chunk):
        yield ev.outputs(net._weights, net._biases, start, min(start + ev.chunk, n))
