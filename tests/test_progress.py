"""Progress: the per-slice hook trains exactly as one call does; the bar, the plain lines, and
when each is chosen."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from conftest import random_batch

import fastbp
from fastbp.model import progress

SIZES = [10, 8, 5]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("n, batch_size", [(100, 7), (64, 64), (50, 1), (97, 10)])
def test_slices_train_exactly_as_one_call(rng, n, batch_size):
    X, Y = random_batch(rng, SIZES, n)
    plain = fastbp.Network(SIZES, seed=2, dtype="float64")
    h1 = plain.train(X, Y, epochs=2, batch_size=batch_size, eta=0.8, lmbda=0.1)
    calls = []
    sliced = fastbp.Network(SIZES, seed=2, dtype="float64")
    h2 = sliced.train(X, Y, epochs=2, batch_size=batch_size, eta=0.8, lmbda=0.1,
                      progress=lambda *a: calls.append(a))
    for a, b in zip([*plain.weights, *plain.biases], [*sliced.weights, *sliced.biases]):
        assert np.array_equal(a, b)
    assert [r.cost for r in h2] == pytest.approx([r.cost for r in h1], rel=1e-12)
    # Each epoch: (0, 0, n) first, then increasing counts ending at n; costs add up.
    starts = [i for i, c in enumerate(calls) if c[0] == 0]
    assert len(starts) == 2
    for begin, end in zip(starts, [*starts[1:], len(calls)]):
        epoch = calls[begin:end]
        done = [c[0] for c in epoch]
        assert done == sorted(done) and done[-1] == n and all(c[2] == n for c in epoch)
        assert all(d % batch_size == 0 for d in done[:-1])  # whole mini-batches per slice
        assert 2 <= len(epoch) <= 42
    assert calls[starts[1] - 1][1] / n == pytest.approx(h2[0].cost, rel=1e-12)


def test_reporter_is_chosen_by_quiet_terminal_and_tqdm(monkeypatch):
    pytest.importorskip("tqdm")
    assert progress.reporter(quiet=True, stream=Terminal()) is None
    assert isinstance(progress.reporter(stream=io.StringIO()), progress.PlainLines)
    assert isinstance(progress.reporter(stream=Terminal()), progress.EpochBar)
    assert isinstance(progress.reporter(stream=Terminal(), bar=False), progress.PlainLines)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    assert isinstance(progress.reporter(stream=Terminal()), progress.PlainLines)


def test_the_bar_shows_samples_per_second_cost_and_accuracy(rng):
    pytest.importorskip("tqdm")
    X, Y = random_batch(rng, SIZES, 200)
    out = Terminal()
    bar = progress.reporter(stream=out, epochs=2, n_test=50)
    net = fastbp.Network(SIZES, seed=1)
    net.train(X, Y, epochs=2, batch_size=5, eta=0.5, test=(X[:, :50], Y[:, :50].argmax(0)),
              progress=bar.hook, callback=bar)
    bar.close()
    text = out.getvalue()
    assert "Epoch 0" in text and "Epoch 1" in text
    assert "samples/s" in text and "200/200" in text
    assert "cost 0." in text and "test " in text and " %" in text


def test_plain_lines_are_the_verbose_lines(rng):
    X, Y = random_batch(rng, SIZES, 40)
    out = io.StringIO()
    lines = progress.reporter(stream=out, n_test=40)
    assert lines.hook is None
    net = fastbp.Network(SIZES, seed=1)
    history = net.train(X, Y, epochs=2, batch_size=5, eta=0.5, test=(X, Y.argmax(0)),
                        callback=lines)
    from fastbp.core.records import format_record

    assert out.getvalue().splitlines() == [format_record(r, 40) for r in history]
