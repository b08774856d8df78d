"""Counting correct predictions on a fixed set, on the device, in chunks that reuse buffers."""

from __future__ import annotations

from collections.abc import Sequence

from .equations import feedforward
from .ops import Array, Ops


class Evaluator:
    """Counts correct predictions on a fixed set, in chunks that reuse their buffers."""

    def __init__(self, backend: Ops, sizes: list[int], xs: Array, labels: Array,
                 chunk: int = 10_000, kinds: Sequence[str] | None = None) -> None:
        self.backend, self.xs, self.labels, self.kinds = backend, xs, labels, kinds
        self.n = int(xs.shape[0])
        self.chunk = max(1, min(chunk, self.n))
        self.activations = [backend.empty((k, self.chunk)) for k in sizes[1:]]

    def outputs(self, weights: list[Array], biases: list[Array], start: int, stop: int) -> Array:
        """``a^L`` for samples ``start:stop`` (one sample per column)."""
        x = self.xs[start:stop, :].T
        acts = [a[:, : stop - start] for a in self.activations]
        return feedforward(self.backend, weights, biases, x, acts, self.kinds)

    def correct(self, weights: list[Array], biases: list[Array], first: int = 0,
                last: int | None = None) -> int:
        """How many of samples ``first:last`` (all by default) the network classifies
        correctly (argmax of ``a^L``)."""
        be, hits = self.backend, 0
        last = self.n if last is None else last
        for start in range(first, last, self.chunk):
            stop = min(start + self.chunk, last)
            guess = be.argmax_columns(self.outputs(weights, biases, start, stop))
            hits = hits + be.count_equal(guess, self.labels[start:stop])
        return int(hits)
