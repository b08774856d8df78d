"""The book's chapter 3 options: L2 (``lmbda``), ``network2.py``'s monitoring flags and early
stopping, on ``SGD`` and on ``train`` (through callbacks)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_batch

import fastbp
from fastbp.core import reference
from fastbp.model.monitoring import EarlyStopping, Monitor, chain, total_cost

SIZES = [8, 6, 4]


def pairs(rng, n, labels=False):
    X, Y = random_batch(rng, SIZES, n)
    if labels:
        return [(X[:, j:j + 1], int(Y[:, j].argmax())) for j in range(n)]
    return [(X[:, j:j + 1], Y[:, j:j + 1]) for j in range(n)]


def record(epoch, accuracy=None):
    return fastbp.EpochRecord(epoch=epoch, cost=1.0, accuracy=accuracy, correct=None,
                              seconds=0.0, samples_per_s=0.0)


# -- L2 ------------------------------------------------------------------------------------------
def test_lmbda_is_the_books_weight_decay(rng):
    """``W ← (1 − ηλ/n) W − (η/m) Σ ∂C_x/∂W``; biases are not decayed (network2.py)."""
    X, Y = random_batch(rng, SIZES, 20)
    net = fastbp.Network(SIZES, dtype="float64", seed=4)
    w, b = list(net.weights), list(net.biases)
    eta, lmbda, m, n = 0.5, 2.0, 5, 20
    for start in range(0, n, m):
        nb, nw = reference.backprop_loop(w, b, X[:, start:start + m], Y[:, start:start + m])
        w = [(1 - eta * lmbda / n) * wl - (eta / m) * g for wl, g in zip(w, nw)]
        b = [bl - (eta / m) * g for bl, g in zip(b, nb)]
    net.train(X, Y, epochs=1, batch_size=m, eta=eta, lmbda=lmbda, shuffle=False)
    for got, want in zip([*net.weights, *net.biases], [*w, *b]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# -- network2.py's SGD ---------------------------------------------------------------------------
def test_network2_sgd_returns_the_four_lists(rng, capsys):
    training, evaluation = pairs(rng, 40), pairs(rng, 15, labels=True)
    net = fastbp.Network(SIZES, seed=1, dtype="float64")
    out = net.SGD(training, 3, 10, 0.5, lmbda=0.1, evaluation_data=evaluation,
                  monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                  monitor_training_cost=True, monitor_training_accuracy=True)
    evaluation_cost, evaluation_accuracy, training_cost, training_accuracy = out
    assert isinstance(out, fastbp.Monitoring)
    assert [len(v) for v in out] == [3, 3, 3, 3]
    assert all(isinstance(a, int) and 0 <= a <= 15 for a in evaluation_accuracy)
    assert all(isinstance(a, int) and 0 <= a <= 40 for a in training_accuracy)
    # The last entries describe the network as it is now.
    Xe = np.hstack([x for x, _ in evaluation])
    ye = np.array([y for _, y in evaluation])
    assert evaluation_accuracy[-1] == net.count_correct(Xe, ye)
    assert evaluation_cost[-1] == pytest.approx(total_cost(net, Xe, ye, lmbda=0.1), rel=1e-12)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        "Epoch 0 training complete",
        f"Cost on training data: {training_cost[0]}",
        f"Accuracy on training data: {training_accuracy[0]} / 40",
        f"Cost on evaluation data: {evaluation_cost[0]}",
        f"Accuracy on evaluation data: {evaluation_accuracy[0]} / 15",
    ]


def test_only_the_monitored_lists_fill(rng, capsys):
    net = fastbp.Network(SIZES, seed=1)
    out = net.SGD(pairs(rng, 30), 2, 10, 0.5, evaluation_data=pairs(rng, 10, labels=True),
                  monitor_evaluation_accuracy=True)
    assert [len(v) for v in out] == [0, 2, 0, 0]
    assert "Cost" not in capsys.readouterr().out


def test_total_cost_is_network2s_formula(rng):
    net = fastbp.Network(SIZES, seed=2, dtype="float64", cost="cross-entropy")
    X, Y = random_batch(rng, SIZES, 25)
    labels = Y.argmax(axis=0)
    a = net.feedforward(X)
    per_sample = sum(fastbp.CrossEntropyCost.fn(a[:, j:j + 1], Y[:, j:j + 1]) for j in range(25))
    l2 = sum(np.linalg.norm(w) ** 2 for w in net.weights)
    want = per_sample / 25 + 0.5 * (3.0 / 25) * l2
    assert total_cost(net, X, labels, lmbda=3.0) == pytest.approx(want, rel=1e-12)
    assert total_cost(net, X, Y, lmbda=0.0) == pytest.approx(per_sample / 25, rel=1e-12)


def test_network2_early_stopping_n(rng, monkeypatch, capsys):
    net = fastbp.Network(SIZES, seed=1)
    monkeypatch.setattr(fastbp.Network, "accuracy", lambda self, X, labels: 0.5)  # a plateau
    out = net.SGD(pairs(rng, 30), 50, 10, 0.5, evaluation_data=pairs(rng, 10, labels=True),
                  monitor_evaluation_cost=True, early_stopping_n=3)
    assert len(out.evaluation_cost) == 4  # best at epoch 0, then 3 epochs without a better one
    assert len(net.history) == 4


def test_chapter_1_sgd_is_unchanged_and_keywords_do_not_mix(rng, capsys):
    net = fastbp.Network(SIZES, seed=1)
    history = net.SGD(pairs(rng, 20), 2, 5, 1.0, test_data=pairs(rng, 5, labels=True))
    assert isinstance(history, fastbp.History) and len(history) == 2
    with pytest.raises(fastbp.ConfigError, match="evaluation_data"):
        net.SGD(pairs(rng, 20), 1, 5, 1.0, pairs(rng, 5, labels=True), lmbda=1.0)
    with pytest.raises(fastbp.ConfigError, match="needs evaluation data"):
        net.SGD(pairs(rng, 20), 1, 5, 1.0, monitor_evaluation_accuracy=True)
    with pytest.raises(fastbp.ConfigError, match="early_stopping_n needs evaluation_data"):
        net.SGD(pairs(rng, 20), 1, 5, 1.0, early_stopping_n=2)


# -- the same on train, through callbacks ----------------------------------------------------------
def test_monitor_on_train_equals_network2_sgd(rng, capsys):
    training, evaluation = pairs(rng, 40), pairs(rng, 15, labels=True)
    book = fastbp.Network(SIZES, seed=7, dtype="float64")
    want = book.SGD(training, 3, 10, 0.5, lmbda=0.2, evaluation_data=evaluation,
                    monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                    monitor_training_cost=True, monitor_training_accuracy=True)
    X, Y = np.hstack([x for x, _ in training]), np.hstack([y for _, y in training])
    Xe, ye = np.hstack([x for x, _ in evaluation]), np.array([y for _, y in evaluation])
    net = fastbp.Network(SIZES, seed=7, dtype="float64")
    monitor = Monitor(evaluation=(Xe, ye), training=(X, Y), lmbda=0.2, evaluation_cost=True,
                      evaluation_accuracy=True, training_cost=True, training_accuracy=True)
    net.train(X, Y, epochs=3, batch_size=10, eta=0.5, lmbda=0.2, callback=monitor)
    assert monitor.lists() == want
    assert monitor.state() == want._asdict()
    again = Monitor(evaluation=(Xe, ye), evaluation_accuracy=True)
    again.load_state(monitor.state())
    assert again.lists() == want


def test_early_stopping_counts_epochs_without_a_better_accuracy():
    stop = EarlyStopping(2)
    net = None
    results = [stop(record(e, acc), net) for e, acc in enumerate([0.5, 0.6, 0.6, 0.7, 0.65,
                                                                  0.7])]
    assert results == [True, True, True, True, True, False]
    assert stop.best_accuracy == 0.7 and stop.best_epoch == 3 and stop.stopped_epoch == 5
    strict = EarlyStopping(1, min_delta=0.05)
    assert [strict(record(e, a), net) for e, a in enumerate([0.5, 0.53])] == [True, False]


def test_early_stopping_state_round_trips():
    stop = EarlyStopping(3)
    for e, a in enumerate([0.5, 0.4]):
        stop(record(e, a), None)
    other = EarlyStopping(3)
    other.load_state(stop.state())
    assert other.state() == stop.state() == {"best_accuracy": 0.5, "best_epoch": 0, "wait": 1,
                                             "stopped_epoch": None}


def test_early_stopping_on_validation_data_stops_train(rng, monkeypatch):
    X, Y = random_batch(rng, SIZES, 30)
    Xv, Yv = random_batch(rng, SIZES, 10)
    seen = []
    monkeypatch.setattr(fastbp.Network, "accuracy",
                        lambda self, X, labels: seen.append(X.shape[1]) or 0.5)
    net = fastbp.Network(SIZES, seed=3)
    stop = EarlyStopping(2, data=(Xv, Yv.argmax(axis=0)))
    history = net.train(X, Y, epochs=20, batch_size=5, eta=0.5, callback=stop)
    assert len(history) == 3 and stop.stopped_epoch == 2
    assert seen == [10, 10, 10]  # measured on the validation set, not the training set


def test_early_stopping_without_any_accuracy_is_a_clear_error(rng):
    X, Y = random_batch(rng, SIZES, 30)
    with pytest.raises(fastbp.ConfigError, match="needs validation data"):
        fastbp.Network(SIZES, seed=3).train(X, Y, epochs=2, batch_size=5, eta=0.5,
                                             callback=EarlyStopping(1))
    with pytest.raises(fastbp.ConfigError, match="patience must be"):
        EarlyStopping(0)


def test_chain_runs_every_callback_and_stops_when_one_says_so(rng):
    calls = []
    both = chain(lambda r, n: calls.append(("a", r.epoch)) or False, None,
                 lambda r, n: calls.append(("b", r.epoch)))
    X, Y = random_batch(rng, SIZES, 10)
    history = fastbp.Network(SIZES, seed=1).train(X, Y, epochs=5, batch_size=5, eta=0.1,
                                                  callback=both)
    assert len(history) == 1 and calls == [("a", 0), ("b", 0)]
