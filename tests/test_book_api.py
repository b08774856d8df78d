"""The book's API (``import fastbp as network``) and the ``train`` fast path's contract."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import mnist_dir, random_batch

import fastbp
from fastbp.core import reference


def book_pairs(rng, sizes, n, labels=False):
    """The book's data: a list of ``(x, y)`` column pairs (one-hot ``y``, or int labels)."""
    X, Y = random_batch(rng, sizes, n)
    if labels:
        return [(X[:, j : j + 1], int(Y[:, j].argmax())) for j in range(n)]
    return [(X[:, j : j + 1], Y[:, j : j + 1]) for j in range(n)]


# -- chapter 1, unchanged ----------------------------------------------------------------------
def test_the_books_chapter_1_session_runs_unchanged(monkeypatch, capsys):
    if mnist_dir() is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    monkeypatch.setenv("FASTBP_DATA", str(mnist_dir()))

    # The book's session with its two imports swapped; a subset keeps the test quick.
    from fastbp.data import mnist_loader
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    training_data, test_data = training_data[:5000], test_data[:1000]
    import fastbp as network
    net = network.Network([784, 30, 10])
    net.SGD(training_data, 2, 10, 3.0, test_data=test_data)

    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r"\d+ /", "N /", s) for s in lines] == ["Epoch 0: N / 1000",
                                                           "Epoch 1: N / 1000"]
    correct = int(lines[-1].split()[2])
    assert correct > 400  # chance is 100; 40 unseeded runs gave 556 to 805
    assert net.evaluate(test_data) == correct


def test_sgd_without_test_data_says_epoch_complete(rng, capsys):
    net = fastbp.Network([6, 4, 3], seed=0)
    net.SGD(book_pairs(rng, [6, 4, 3], 12), 2, 5, 1.0)
    assert capsys.readouterr().out.splitlines() == ["Epoch 0 complete", "Epoch 1 complete"]


# -- the book's methods ------------------------------------------------------------------------
def test_update_mini_batch_is_one_sgd_step(rng):
    sizes = [6, 5, 3]
    net = fastbp.Network(sizes, dtype="float64", seed=2)
    batch = book_pairs(rng, sizes, 7)
    X = np.hstack([x for x, _ in batch])
    Y = np.hstack([y for _, y in batch])
    w0, b0 = list(net.weights), list(net.biases)
    nb, nw = reference.backprop_loop(w0, b0, X, Y)
    net.update_mini_batch(batch, 0.5)
    for got, w, g in zip(net.weights, w0, nw):
        np.testing.assert_allclose(got, w - 0.5 / 7 * g, rtol=0, atol=1e-12)
    for got, b, g in zip(net.biases, b0, nb):
        np.testing.assert_allclose(got, b - 0.5 / 7 * g, rtol=0, atol=1e-12)
    assert not np.allclose(net.weights[0], w0[0])


def test_evaluate_counts_argmax_hits(rng):
    sizes = [6, 5, 3]
    net = fastbp.Network(sizes, seed=3)
    data = book_pairs(rng, sizes, 40, labels=True)
    want = sum(int(np.argmax(net.feedforward(x)) == y) for x, y in data)
    assert net.evaluate(data) == want
    assert 0 < want < 40


def test_cost_derivative():
    net = fastbp.Network([3, 2])
    a, y = np.array([[0.25], [0.75]]), np.array([[0.0], [1.0]])
    np.testing.assert_array_equal(net.cost_derivative(a, y), [[0.25], [-0.25]])


def test_feedforward_of_one_column():
    net = fastbp.Network([784, 30, 10], dtype="float64", seed=4)
    x = np.random.default_rng(0).random((784, 1))
    out = net.feedforward(x)
    assert out.shape == (10, 1)
    np.testing.assert_allclose(out, reference.feedforward(list(net.weights), list(net.biases), x),
                               atol=1e-12)


def test_backprop_of_one_book_pair_is_the_books_gradient(rng):
    sizes = [6, 5, 3]
    net = fastbp.Network(sizes, dtype="float64", seed=5)
    (x, y), = book_pairs(rng, sizes, 1)
    nb, nw = net.backprop(x, y)
    rb, rw = reference.backprop_sample(list(net.weights), list(net.biases), x, y)
    for got, want in zip(nb + nw, rb + rw):
        np.testing.assert_allclose(got, want, atol=1e-12)


# -- weights and biases ------------------------------------------------------------------------
def test_parameters_read_as_numpy_with_the_books_shapes():
    net = fastbp.Network([784, 30, 10], seed=0)
    assert [w.shape for w in net.weights] == [(30, 784), (10, 30)]
    assert [b.shape for b in net.biases] == [(30, 1), (10, 1)]
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32
               for a in [*net.weights, *net.biases])
    assert len(net.weights[:]) == 2


def test_parameters_are_copies_not_views(rng):
    """What a reader holds does not change under training, nor does it change the network."""
    sizes = [6, 5, 3]
    net = fastbp.Network(sizes, seed=0)
    held = net.weights[0]
    snapshot = held.copy()
    X, Y = random_batch(rng, sizes, 20)
    net.train(X, Y, epochs=1, batch_size=5, eta=1.0)
    np.testing.assert_array_equal(held, snapshot)
    assert not np.array_equal(net.weights[0], snapshot)
    with pytest.raises(fastbp.ConfigError, match=r"read-only.*net\.weights\[0\] = w"):
        held[:] = 123.0  # an edit that could not reach the network is refused, not lost
    assert not np.any(net.weights[0] == 123.0)


def test_parameters_are_assignable(rng):
    sizes = [4, 3, 2]
    net = fastbp.Network(sizes, dtype="float64", seed=0)
    net.weights = [np.zeros((3, 4)), np.zeros((2, 3))]
    net.biases[1] = np.array([[2.0], [-2.0]])
    net.biases[0] = [[0.0], [0.0], [0.0]]  # anything array-like of the right shape
    out = net.feedforward(rng.random((4, 5)))
    sig = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(out, np.repeat([[sig], [1 - sig]], 5, axis=1))
    w = net.weights[0].copy()
    w[0, 0] = 7.0
    net.weights[0] = w
    assert net.weights[0][0, 0] == 7.0


def test_assigned_parameters_take_the_networks_dtype():
    net = fastbp.Network([4, 3, 2], seed=0)
    net.weights[0] = np.ones((3, 4), dtype=np.float64)
    assert net.weights[0].dtype == np.float32


# -- train: history, determinism, callbacks, the last mini-batch --------------------------------
def small_problem(seed=0, n=60, sizes=(8, 6, 3)):
    rng = np.random.default_rng(seed)
    X = rng.random((sizes[0], n))
    labels = (X[:3].argmax(axis=0)) % sizes[-1]  # learnable from the first three inputs
    return list(sizes), X, labels


def test_train_returns_a_history_of_epoch_records():
    sizes, X, labels = small_problem()
    net = fastbp.Network(sizes, seed=1)
    history = net.train(X, labels, epochs=3, batch_size=10, eta=3.0, test=(X, labels))
    assert isinstance(history, fastbp.History) and len(history) == 3
    assert all(isinstance(r, fastbp.EpochRecord) for r in history)
    assert [r.epoch for r in history] == [0, 1, 2]
    for r in history:
        assert r.cost > 0 and r.seconds > 0 and r.samples_per_s > 0
        assert r.correct == round(r.accuracy * 60)
    assert history.best_accuracy == max(r.accuracy for r in history)
    assert history.as_dicts()[0]["epoch"] == 0
    assert set(history.as_dicts()[0]) >= {"cost", "accuracy", "seconds", "samples_per_s"}


def test_train_without_a_test_set_has_no_accuracy():
    sizes, X, labels = small_problem()
    history = fastbp.Network(sizes, seed=1).train(X, labels, epochs=1, batch_size=10, eta=1.0)
    assert history[0].accuracy is None and history.best_accuracy is None


def test_zero_epochs_train_nothing():
    sizes, X, labels = small_problem()
    net = fastbp.Network(sizes, seed=1)
    before = net.weights
    assert len(net.train(X, labels, epochs=0, batch_size=10, eta=1.0)) == 0
    np.testing.assert_array_equal(net.weights[0], before[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_data_same_history(dtype):
    sizes, X, labels = small_problem()

    def run(seed):
        net = fastbp.Network(sizes, seed=seed, dtype=dtype)
        h = net.train(X, labels, epochs=4, batch_size=7, eta=2.0, test=(X, labels))
        return [(r.cost, r.accuracy) for r in h], net.weights[0]

    (h1, w1), (h2, w2), (h3, _) = run(11), run(11), run(12)
    assert h1 == h2
    np.testing.assert_array_equal(w1, w2)
    assert h1 != h3


def test_callback_returning_false_stops_early():
    sizes, X, labels = small_problem()
    seen = []

    def stop_after_two(record, net):
        seen.append(record.epoch)
        return record.epoch < 1

    net = fastbp.Network(sizes, seed=1)
    history = net.train(X, labels, epochs=10, batch_size=10, eta=1.0, callback=stop_after_two)
    assert seen == [0, 1] and len(history) == 2


def test_callback_returning_none_goes_on():
    sizes, X, labels = small_problem()
    seen = []
    fastbp.Network(sizes, seed=1).train(X, labels, epochs=3, batch_size=10, eta=1.0,
                                        callback=lambda r, net: seen.append(r.epoch))
    assert seen == [0, 1, 2]


@pytest.mark.parametrize("n, batch_size", [(25, 10), (7, 3), (10, 10), (5, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_train_equals_the_books_loop_including_the_last_partial_batch(n, batch_size, shuffle):
    """An epoch of ``train`` is the book's SGD: mini-batches of ``batch_size``, the last one
    shorter (25 = 10 + 10 + 5), each step ``W ← W − (η/m) Σ_x ∂C_x/∂W`` with its own ``m``."""
    sizes, X, labels = small_problem(n=n)
    Y = np.eye(sizes[-1])[:, labels]
    net = fastbp.Network(sizes, dtype="float64", seed=3)
    weights, biases = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    rng = np.random.default_rng()
    rng.bit_generator.state = net.rng.bit_generator.state  # the order train will draw
    for _ in range(2):
        order = rng.permutation(n) if shuffle else None
        reference.sgd_epoch(weights, biases, X, Y, batch_size, 0.7, order=order)
    net.train(X, labels, epochs=2, batch_size=batch_size, eta=0.7, shuffle=shuffle)
    for got, want in zip([*net.weights, *net.biases], [*weights, *biases]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_one_hot_and_integer_labels_train_alike():
    sizes, X, labels = small_problem()
    Y = np.eye(sizes[-1])[:, labels]
    a, b = fastbp.Network(sizes, seed=5), fastbp.Network(sizes, seed=5)
    ha = a.train(X, labels, epochs=2, batch_size=10, eta=1.0)
    hb = b.train(X, Y, epochs=2, batch_size=10, eta=1.0)
    assert [r.cost for r in ha] == [r.cost for r in hb]
    np.testing.assert_array_equal(a.weights[1], b.weights[1])


def test_training_learns_an_easy_problem():
    sizes, X, labels = small_problem(n=300)
    net = fastbp.Network(sizes, seed=0, init="scaled")
    history = net.train(X, labels, epochs=30, batch_size=10, eta=3.0, test=(X, labels))
    assert history[-1].cost < history[0].cost
    assert history.best_accuracy > 0.8


def test_the_book_initializers_draw_as_network_does_with_the_relu_gain():
    """``default_weight_initializer`` draws what ``Network(init="scaled")`` draws from the same
    generator state, the relu gain √2 included; ``large_weight_initializer`` what
    ``init="standard"`` draws."""
    import numpy as np

    import fastbp

    for init, method in (("scaled", "default_weight_initializer"),
                         ("standard", "large_weight_initializer")):
        fresh = fastbp.Network([30, 20, 10], activation="relu", init=init, seed=4,
                               dtype="float64")
        redrawn = fastbp.Network([30, 20, 10], activation="relu", seed=4, dtype="float64")
        redrawn.rng = np.random.default_rng(4)
        getattr(redrawn, method)()
        assert redrawn.init == init
        for a, b in zip([*fresh.weights, *fresh.biases], [*redrawn.weights, *redrawn.biases]):
            np.testing.assert_array_equal(a, b)
    scaled = fastbp.Network([400, 200, 10], activation="relu", seed=1, dtype="float64")
    scaled.default_weight_initializer()
    assert abs(float(np.std(scaled.weights[0])) * np.sqrt(400) - np.sqrt(2.0)) < 0.05
