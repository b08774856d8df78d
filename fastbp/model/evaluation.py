"""How good a classifier is on a labelled set: accuracy, error rate, confusion matrix, mistakes.

The network's guess for a sample ``x`` is ``argmax_j a^L_j(x)``. The confusion matrix ``C`` has
one row per answer (the true digit) and one column per guess: ``C[i, j]`` counts the samples of
digit ``i`` read as ``j``, so the diagonal holds the correct ones and ``Σ_ij C[i, j] = N``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.records import Evaluation
from ..core.validate import check_batch, check_count, check_labels
from ..errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from .network import Network


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
        out = [be.to_numpy(be.argmax_columns(a)) for a in net.outputs_in_chunks(X, chunk)]
    return np.concatenate(out).astype(np.int64)
