"""Data on its way to the device: the book's ``(x, y)`` pairs as matrices, sample-major copies for
gathering mini-batches, and the epoch plan that ``train`` runs."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..core.evaluator import Evaluator
from ..core.memory import translate_oom
from ..core.ops import Array, Ops
from ..core.plan import Cache, EpochPlan, Layers, Parameters, StepSettings, TrainingData
from ..core.validate import cast_checked, check_batch, check_count, check_labels, check_targets
from ..errors import ConfigError, ShapeError
from . import kept

MOVE_LESS = "train on fewer samples per call (slices of X), or use a device with more memory"


def samples_major(backend: Ops, X: Any, name: str = "X") -> Array:
    """``X`` ``(n_in, N)`` as a C-contiguous ``(N, n_in)`` device array (one copy, kept between
    calls where the device can tell that ``X`` is unchanged: :mod:`fastbp.model.kept`), refused
    (``ShapeError``) if the cast to the network's dtype overflows."""
    def make() -> Array:
        if backend.is_native(X):
            return cast_checked(backend, X, name,
                                lambda x: backend.contiguous(backend.asarray(x.T)))
        return cast_checked(backend, X, name,
                            lambda x: backend.asarray(np.ascontiguousarray(np.asarray(x).T)))

    return kept.samples_major_kept(backend, X, name, make)


def targets_major(backend: Ops, Y: Any, n: int, n_out: int) -> Array:
    """One-hot targets ``(N, n_out)`` from one-hot ``(n_out, N)`` or ``N`` integer labels."""
    Y = backend.check_device(Y, "Y")
    shape = tuple(getattr(Y, "shape", np.shape(Y)))
    if shape == (n_out, n):
        return samples_major(backend, check_targets(Y, n_out, n), "Y")
    labels = check_labels(backend.check_device(Y, "Y", host=True), n_out, n, "Y")
    onehot = np.zeros((n, n_out))
    onehot[np.arange(n), labels] = 1.0
    return backend.asarray(onehot)


def make_plan(backend: Ops, layers: Layers, params: Parameters, X: Any, Y: Any,
              batch_size: int, eta: float, lmbda: float, cache: Cache, *, mu: float = 0.0,
              l1: float = 0.0, dropout: float = 0.0) -> EpochPlan:
    """Validate ``X``/``Y`` and move them to the device, sample-major, as an epoch plan of
    ``layers`` on ``params`` (the cursor is set per epoch); ``mu``, ``l1`` and ``dropout`` are
    chapter 3's (:class:`~fastbp.core.plan.StepSettings`), ``cache`` the network's."""
    sizes = layers.sizes
    X = check_batch(backend.check_device(X, "X"), sizes[0], "X")
    n = int(X.shape[1])
    batch_size = check_count("batch_size", batch_size, low=1, high=n)
    itemsize = np.dtype(backend.dtype).itemsize
    with translate_oom(backend, sizes, batch_size, what=f"the training set ({n:,} samples)",
                       asked=n * (sizes[0] + sizes[-1]) * itemsize, advice=MOVE_LESS):
        xs = samples_major(backend, X)
        ys = targets_major(backend, Y, n, sizes[-1])
    settings = StepSettings(batch_size, eta, n, lmbda=lmbda, mu=mu, l1=l1, dropout=dropout)
    return EpochPlan(layers, settings, params, TrainingData(xs, ys), cache)


def make_evaluator(backend: Ops, sizes: list[int], test: Any, batch_size: int,
                   kinds: tuple[str, ...] | None = None) -> Evaluator | None:
    """An evaluator on the device for ``test = (X_test, labels)``, or ``None`` without one."""
    if test is None:
        return None
    if not (isinstance(test, (tuple, list)) and len(test) == 2):
        raise ConfigError("test must be a pair (X_test, labels)")
    xt = check_batch(backend.check_device(test[0], "test X"), sizes[0], "test X")
    labels = check_labels(backend.check_device(test[1], "test labels", host=True),
                          sizes[-1], int(xt.shape[1]), "test labels")
    n_test = int(xt.shape[1])
    with translate_oom(backend, sizes, batch_size, what=f"the test set ({n_test:,} samples)",
                       asked=n_test * sizes[0] * np.dtype(backend.dtype).itemsize,
                       advice=MOVE_LESS):
        return Evaluator(backend, sizes, samples_major(backend, xt, "test X"),
                         backend.index_array(labels), kinds=kinds)


def outputs_in_chunks(backend: Ops, sizes: Sequence[int], kinds: Sequence[str],
                      weights: Sequence[Array], biases: Sequence[Array], X: Any,
                      chunk: int = 10_000) -> Iterator[Array]:
    """Yield ``a^L`` (device arrays, ``(sizes[-1], ≤ chunk)``) for consecutive column blocks of
    ``X``; each block is valid until the next one is produced. Call inside
    ``backend.activate()``."""
    n = int(np.shape(X)[1])
    ev = Evaluator(backend, list(sizes), samples_major(backend, X),
                   backend.index_array(np.zeros(n, np.int64)), chunk=chunk, kinds=tuple(kinds))
    for start in range(0, n, ev.chunk):
        yield ev.outputs(weights, biases, start, min(start + ev.chunk, n))


def stack_pairs(pairs: Iterable[tuple[Any, Any]], name: str,
                labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The book's list of ``(x, y)`` column pairs as matrices ``X (n_in, N)`` and ``Y``.

    With ``labels=True`` each ``y`` is an integer label and ``Y`` is ``(N,)``.
    """
    try:
        pairs = list(pairs)
    except TypeError as exc:
        raise ShapeError(f"{name} must be a list of (x, y) pairs, got {type(pairs).__name__}") \
            from exc
    if not pairs:
        raise ShapeError(f"{name} is empty")
    try:
        xs, ys = zip(*pairs)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be a list of (x, y) pairs") from exc
    try:
        X = np.hstack([np.asarray(x).reshape(-1, 1) for x in xs])
        Y = (np.asarray([np.asarray(y).reshape(-1)[0] if np.size(y) == 1 else  # checked later
                         int(np.argmax(y)) for y in ys]) if labels
             else np.hstack([np.asarray(y).reshape(-1, 1) for y in ys]))
    except ValueError as exc:
        raise ShapeError(f"the pairs of {name} do not all have the same shapes: {exc}") from exc
    return X, Y
