"""``fastbp.evaluate``: accuracy, error rate, the confusion matrix and the misclassified samples."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.model.evaluation import score

SIZES = [16, 12, 10]


@pytest.fixture
def trained(rng):
    net = fastbp.Network(SIZES, seed=3, dtype="float64")
    X = rng.random((SIZES[0], 300))
    labels = rng.integers(0, 10, 300)
    net.train(X, labels, epochs=3, batch_size=10, eta=1.0)
    return net, X, labels


def test_score_by_hand():
    guesses = np.array([2, 3, 3, 9, 4, 0])
    labels = np.array([2, 2, 3, 4, 4, 0])  # a 2 read as 3 and a 4 read as 9, as on the slide
    e = score(guesses, labels)
    assert e.n == 6 and e.correct == 4
    assert e.accuracy == pytest.approx(4 / 6) and e.error_rate == pytest.approx(2 / 6)
    assert e.misclassified.tolist() == [1, 3]
    assert e.confusion.shape == (10, 10) and e.confusion.sum() == 6
    assert e.confusion[2, 3] == 1 and e.confusion[4, 9] == 1  # rows: answer, columns: guess
    assert e.confusion[3, 2] == 0 and e.confusion[9, 4] == 0
    assert np.trace(e.confusion) == 4 and e.confusion[2, 2] == 1 and e.confusion[0, 0] == 1
    assert sorted(e.most_confused(5)) == [(2, 3, 1), (4, 9, 1)]
    assert e.most_confused(1)[0] in [(2, 3, 1), (4, 9, 1)]


def test_evaluate_matches_argmax_of_feedforward(trained):
    net, X, labels = trained
    e = fastbp.evaluate(net, X, labels)
    guesses = net.feedforward(X).argmax(axis=0)
    assert np.array_equal(e.guesses, guesses)
    assert np.array_equal(e.labels, labels)
    assert e.correct == int((guesses == labels).sum()) == net.count_correct(X, labels)
    assert e.accuracy + e.error_rate == pytest.approx(1.0)
    assert np.array_equal(e.misclassified, np.flatnonzero(guesses != labels))
    want = np.zeros((10, 10), dtype=np.int64)
    np.add.at(want, (labels, guesses), 1)
    assert np.array_equal(e.confusion, want)
    assert e.confusion.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()


def test_evaluate_in_chunks_and_with_one_hot_labels(trained):
    net, X, labels = trained
    whole = fastbp.evaluate(net, X, labels)
    onehot = np.eye(10)[:, labels]
    for e in (fastbp.evaluate(net, X, labels, chunk=7), fastbp.evaluate(net, X, onehot)):
        assert np.array_equal(e.guesses, whole.guesses)
        assert np.array_equal(e.confusion, whole.confusion)


def test_summary_and_text_table(trained):
    net, X, labels = trained
    e = fastbp.evaluate(net, X, labels)
    assert f"{e.correct} / 300 correct" in e.summary()
    assert f"{100 * e.error_rate:.2f} %" in e.summary()
    table = e.format_confusion().splitlines()
    assert len(table) == 11 and table[0].startswith("answer\\guess")
    assert [int(v) for v in table[3].split()[1:]] == e.confusion[2].tolist()


def test_a_perfect_classifier():
    e = score(np.arange(10), np.arange(10))
    assert e.accuracy == 1.0 and e.error_rate == 0.0 and len(e.misclassified) == 0
    assert e.most_confused() == []


@pytest.mark.parametrize("guesses, labels, says", [
    ([1, 2], [1, 2, 3], "2 guesses for 3 labels"),
    ([], [], "no samples"),
    ([1, 12], [1, 2], "out of range"),
    ([1, 2], [1.5, 2], "integers"),
])
def test_bad_input_is_a_clear_error(guesses, labels, says):
    with pytest.raises(fastbp.ShapeError, match=says):
        score(np.asarray(guesses, dtype=np.float64 if says == "integers" else np.int64),
              np.asarray(labels))


def test_evaluate_refuses_a_wrong_batch_or_labels(trained):
    net, X, labels = trained
    with pytest.raises(fastbp.ShapeError, match="transpose"):
        fastbp.evaluate(net, X.T, labels)
    with pytest.raises(fastbp.ShapeError, match="expected \\(300,\\)"):
        fastbp.evaluate(net, X, labels[:-1])
