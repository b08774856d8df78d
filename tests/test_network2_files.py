"""The book's model files: ``fastbp.load`` reads what ``network2.py``'s ``save`` writes, and
``net.save(path, format="network2")`` writes what its ``load`` reads. The book's own logic is
written out here (``save``, ``load``, ``feedforward``, ``evaluate``), so no download is needed."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest

import fastbp
from fastbp.errors import ConfigError, ModelFormatError

SIZES = [12, 9, 10]


# -- network2.py's logic, as the book writes it ---------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class BookCost:
    """Stand-ins for network2.py's cost classes: only their names matter to its files."""


class QuadraticCost(BookCost):
    pass


class CrossEntropyCost(BookCost):
    pass


class BookNetwork:
    """network2.py's Network: ``default_weight_initializer``, ``feedforward``, ``save``."""

    def __init__(self, sizes, cost=CrossEntropyCost, seed=0):
        rng = np.random.default_rng(seed)
        self.num_layers, self.sizes, self.cost = len(sizes), sizes, cost
        self.biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) / np.sqrt(x)
                        for x, y in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = _sigmoid(np.dot(w, a) + b)
        return a

    def accuracy(self, data):
        results = [(np.argmax(self.feedforward(x)), y) for (x, y) in data]
        return sum(int(x == y) for (x, y) in results)

    def save(self, filename):
        data = {"sizes": self.sizes,
                "weights": [w.tolist() for w in self.weights],
                "biases": [b.tolist() for b in self.biases],
                "cost": str(self.cost.__name__)}
        f = open(filename, "w")
        json.dump(data, f)
        f.close()


def book_load(filename):
    """network2.py's ``load``."""
    f = open(filename)
    data = json.load(f)
    f.close()
    cost = getattr(sys.modules[__name__], data["cost"])
    net = BookNetwork(data["sizes"], cost=cost)
    net.weights = [np.array(w) for w in data["weights"]]
    net.biases = [np.array(b) for b in data["biases"]]
    return net


def samples(rng, n=200):
    X = rng.random((SIZES[0], n))
    labels = rng.integers(0, SIZES[-1], n)
    return X, labels, [(X[:, [i]], int(labels[i])) for i in range(n)]


# -- reading the book's file ----------------------------------------------------------------
@pytest.mark.parametrize("cost", [CrossEntropyCost, QuadraticCost])
def test_a_file_network2_wrote_loads_and_scores_the_same(rng, tmp_path, cost):
    book = BookNetwork(SIZES, cost=cost, seed=3)
    path = tmp_path / "net.json"
    book.save(str(path))
    net = fastbp.load(path)
    assert net.sizes == SIZES and net.dtype == "float64" and list(net.kinds) == ["sigmoid"] * 2
    assert net.cost.name == {"CrossEntropyCost": "cross-entropy",
                             "QuadraticCost": "quadratic"}[cost.__name__]
    for ours, theirs in zip([*net.weights, *net.biases], [*book.weights, *book.biases]):
        assert np.array_equal(ours, theirs)  # exact: JSON floats are float64
    X, labels, pairs = samples(rng)
    assert net.count_correct(X, labels) == book.accuracy(pairs)
    assert net.evaluate([(x, y) for x, y in pairs]) == book.accuracy(pairs)
    np.testing.assert_allclose(net.feedforward(X), book.feedforward(X), rtol=1e-12)


def test_a_loaded_book_network_trains_on(rng, tmp_path):
    BookNetwork(SIZES, seed=4).save(str(tmp_path / "net.json"))
    net = fastbp.load(str(tmp_path / "net.json"))
    X, labels, _ = samples(rng)
    net.train(X, labels, epochs=2, batch_size=10, eta=0.5, lmbda=1.0)
    assert len(net.history) == 2


# -- writing it -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_as_network2_is_read_by_network2s_load(rng, tmp_path, dtype):
    net = fastbp.Network(SIZES, cost="cross-entropy", dtype=dtype, seed=5)
    X, labels, pairs = samples(rng)
    net.train(X, labels, epochs=1, batch_size=10, eta=0.5)
    path = net.save(tmp_path / "net.json", format="network2")
    assert sorted(json.loads(path.read_text())) == ["biases", "cost", "sizes", "weights"]
    book = book_load(str(path))
    assert book.cost is CrossEntropyCost and book.sizes == SIZES
    for ours, theirs in zip([*net.weights, *net.biases], [*book.weights, *book.biases]):
        assert np.array_equal(ours.astype(np.float64), theirs)
    assert book.accuracy(pairs) == net.count_correct(X, labels)
    again = fastbp.load(path)  # and round trips
    assert all(np.array_equal(a.astype(np.float64), b)
               for a, b in zip(net.weights, again.weights))


def test_network2_save_is_atomic_and_checked(rng, tmp_path):
    net = fastbp.Network(SIZES, cost="quadratic", seed=6)
    path = tmp_path / "net.json"
    path.write_text("old")
    net.save(path, format="network2")
    assert book_load(str(path)).cost is QuadraticCost
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert stat.S_IMODE(path.stat().st_mode) & 0o600 == 0o600
    with pytest.raises(fastbp.SaveError, match="does not exist"):
        net.save(tmp_path / "missing" / "net.json", format="network2")
    with pytest.raises(fastbp.SaveError, match="directory"):
        net.save(tmp_path, format="network2")
    with pytest.raises(ConfigError, match="format"):
        net.save(path, format="pickle")


def test_networks_network2_cannot_hold_are_refused(tmp_path):
    for net in (fastbp.Network(SIZES, cost="log-likelihood", activation="relu"),
                fastbp.Network(SIZES, activation="tanh")):
        with pytest.raises(ModelFormatError, match="sigmoid neurons"):
            net.save(tmp_path / "net.json", format="network2")
    assert not (tmp_path / "net.json").exists()


# -- anything else in a .json ---------------------------------------------------------------
def _good():
    book = BookNetwork(SIZES, seed=1)
    return {"sizes": SIZES, "weights": [w.tolist() for w in book.weights],
            "biases": [b.tolist() for b in book.biases], "cost": "CrossEntropyCost"}


@pytest.mark.parametrize("change, says", [
    (lambda d: "[1, 2, 3]", "not an object"),
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: {**d, "epoch": 3}, "unexpected epoch"),
    (lambda d: {k: v for k, v in d.items() if k != "biases"}, "missing biases"),
    (lambda d: {**d, "cost": "LogLikelihoodCost"}, "unknown cost"),
    (lambda d: {**d, "sizes": [12, 0, 10]}, "positive integers"),
    (lambda d: {**d, "sizes": [12, 8, 10]}, r"weights\[0\] has shape"),
    (lambda d: {**d, "weights": d["weights"][:1]}, "list of 2 matrices"),
    (lambda d: {**d, "biases": [d["biases"][0], [["x"]] * 10]}, "not a matrix of numbers"),
    (lambda d: {**d, "weights": [d["weights"][0], [[1.0, 2.0]] * 10]}, "has shape"),
    (lambda d: "NAN", "not valid JSON"),
])
def test_anything_else_in_a_json_file_is_refused(tmp_path, change, says):
    doc = change(_good())
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ModelFormatError, match=says) as info:
        fastbp.load(path)
    assert str(path) in str(info.value)


def test_non_finite_values_and_missing_files_are_refused(tmp_path):
    doc = _good()
    doc["weights"][1][0][0] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(doc))  # Python writes NaN, as network2.py's json.dump would
    with pytest.raises(ModelFormatError, match="NaN or inf"):
        fastbp.load(path)
    with pytest.raises(ModelFormatError, match="no such model file"):
        fastbp.load(tmp_path / "absent.json")
    bad = tmp_path / "bytes.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        fastbp.load(bad)


# -- the command line -----------------------------------------------------------------------
def test_train_saves_and_evaluate_reads_the_books_file(tmp_path, capsys):
    from conftest import mnist_dir

    from fastbp import cli

    data = mnist_dir()
    if data is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    path = tmp_path / "net.json"
    assert cli.main(["train", "--epochs", "1", "--limit", "500", "--seed", "2", "--cost",
                     "cross-entropy", "--quiet", "--data", str(data), "--save", str(path)]) == 0
    book = book_load(str(path))
    assert book.cost is CrossEntropyCost and book.sizes == [784, 30, 10]
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--data", str(data), "--show", "0"]) == 0
    out = capsys.readouterr().out
    test = fastbp.datasets.load_mnist(data).test
    hits = book.accuracy([(test.X[:, [i]].astype(np.float64), int(test.labels[i]))
                          for i in range(len(test))])
    assert f"{100 * hits / len(test):.2f} %" in out, out
    assert fastbp.load(path).count_correct(test.X, test.labels) == hits
    relu = tmp_path / "relu.json"
    assert cli.main(["train", "--epochs", "1", "--limit", "500", "--activation", "relu",
                     "--data", str(data), "--save", str(relu)]) == 2
    assert "sigmoid neurons" in capsys.readouterr().err and not relu.exists()


def test_evaluate_says_a_network2_file_keeps_no_history() -> None:
    from types import SimpleNamespace

    from fastbp.cli.evaluate import trained

    assert trained("net.json", SimpleNamespace(history=[])).startswith("epochs trained: not "
                                                                       "recorded")
    assert trained("m.npz", SimpleNamespace(history=[1, 2])) == "2 epochs trained"
