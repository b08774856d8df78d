"""``fastbp.network3``: the book's chapter-6 code runs unchanged, with network3's semantics
(initialisation, the L2 term over num_training_batches, mini-batches in order, dropout scaled at
evaluation), its prints, and clear errors."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

import fastbp.network3 as network3
from fastbp.core import reference_conv
from fastbp.errors import ConfigError, DataError, ShapeError
from fastbp.network3 import (
    ConvPoolLayer,
    FullyConnectedLayer,
    Network,
    ReLU,
    SoftmaxLayer,
    linear,
    sigmoid,
    tanh,
)

# The book's chapter-6 program (its conv net with rectified linear units), one epoch instead of 60.
BOOK_CODE = """
import fastbp.network3 as network3
from fastbp.network3 import Network
from fastbp.network3 import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
from fastbp.network3 import ReLU
training_data, validation_data, test_data = network3.load_data_shared()
mini_batch_size = 10
net = Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                      filter_shape=(20, 1, 5, 5),
                      poolsize=(2, 2),
                      activation_fn=ReLU),
        FullyConnectedLayer(n_in=20*12*12, n_out=100, activation_fn=ReLU),
        SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
net.SGD(training_data, 1, mini_batch_size, 0.03,
            validation_data, test_data, lmbda=0.1)
"""


def test_the_books_code_runs_and_prints_what_network3_prints(data_dir, monkeypatch, capsys):
    """On 2,000 training and 500 validation and test images, one epoch prints the book's lines
    in the book's order, and the accuracy is far above chance (10 %)."""
    real = network3.load_data_shared

    def small() -> list:
        tr, va, te = real()
        return [(tr[0][:2000], tr[1][:2000]), (va[0][:500], va[1][:500]),
                (te[0][:500], te[1][:500])]

    monkeypatch.setattr(network3, "load_data_shared", small)
    np.random.seed(0)
    exec(compile(BOOK_CODE, "book", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Training mini-batch number 0"
    assert lines[1].startswith("Epoch 0: validation accuracy ")
    assert lines[2:4] == ["This is the best validation accuracy to date.",
                          lines[3]] and lines[3].startswith("The corresponding test accuracy is ")
    assert lines[4] == "Finished training network."
    assert lines[5].startswith("Best validation accuracy of ") and \
        lines[5].endswith(" obtained at iteration 199")
    assert lines[6].startswith("Corresponding test accuracy of ")
    validation = float(lines[1].rsplit(" ", 1)[1].rstrip("%"))
    assert validation > 30.0


def test_initialisation_is_network3s(monkeypatch):
    """Weights ``N(0, 1/n_out)`` (a conv layer's ``n_out = F·kh·kw / pool area``), biases
    ``N(0, 1)``, drawn from ``numpy.random`` in the book's order; softmax zeros."""
    np.random.seed(3)
    conv = ConvPoolLayer((4, 2, 3, 3), (10, 2, 9, 9), (2, 2), ReLU)
    fc = FullyConnectedLayer(n_in=16, n_out=5)
    soft = SoftmaxLayer(n_in=5, n_out=3)
    np.random.seed(3)
    w_conv = np.random.normal(0.0, np.sqrt(1.0 / (4 * 9 // 4)), size=(4, 2, 3, 3))
    b_conv = np.random.normal(0.0, 1.0, size=(4,))
    w_fc = np.random.normal(0.0, np.sqrt(1.0 / 5), size=(16, 5))
    b_fc = np.random.normal(0.0, 1.0, size=(5,))
    np.testing.assert_array_equal(conv.w, w_conv.reshape(4, 18))
    np.testing.assert_array_equal(conv.b.ravel(), b_conv)
    np.testing.assert_array_equal(fc.w, w_fc.T)
    np.testing.assert_array_equal(fc.b.ravel(), b_fc)
    assert not soft.w.any() and not soft.b.any()


def _tiny(p_dropout: float = 0.0, device: str = "cpu") -> Network:
    np.random.seed(1)
    layers = [ConvPoolLayer((3, 1, 3, 3), (4, 1, 8, 8), (2, 2), tanh),
              FullyConnectedLayer(n_in=27, n_out=6, activation_fn=sigmoid, p_dropout=p_dropout),
              SoftmaxLayer(n_in=6, n_out=10)]
    net = Network(layers, 4, device=device, dtype="float64")
    rng = np.random.default_rng(2)  # a nonzero softmax, so every layer moves
    net.params[-1] = tuple(net.backend.asarray(rng.normal(size=shape))
                           for shape in net.layers[-1].param_shapes())
    return net


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 64)), rng.integers(0, 10, size=n)


def test_sgd_steps_are_the_books_in_order_with_l2_over_num_training_batches(capsys):
    """Two epochs over 10 samples in mini-batches of 4 (the last 2 samples unused) give
    ``W ← (1 − ηλ/nb) W − (η/m) Σ ∂C_x/∂W`` with the oracle's gradients, batches in order."""
    net = _tiny()
    params = [tuple(net.backend.to_numpy(p).copy() for p in pair) for pair in net.params]
    x, labels = _data(10)
    eta, lmbda, nb = 0.2, 0.5, 10 // 4
    net.SGD((x, labels), 2, 4, eta, (x, labels), None, lmbda=lmbda)
    for _ in range(2):
        for i in range(nb):
            cols = slice(4 * i, 4 * i + 4)
            _, grads = reference_conv.backprop_loop(net.layers, params, x[cols].T, labels[cols])
            params = [((1 - eta * lmbda / nb) * w - eta / 4 * gw, b - eta / 4 * gb)
                      for (w, b), (gw, gb) in zip(params, grads)]
    for (w, b), (want_w, want_b) in zip(net.params, params):
        np.testing.assert_allclose(net.backend.to_numpy(w), want_w, rtol=0, atol=1e-12)
        np.testing.assert_allclose(net.backend.to_numpy(b), want_b, rtol=0, atol=1e-12)
    assert "Corresponding test accuracy" not in capsys.readouterr().out


def test_dropout_masks_in_training_and_scaling_at_evaluation():
    """Training masks are 0/1 with about ``1 − p`` kept and the step's gradient is the oracle's
    on the masked inputs; evaluation computes ``f((1 − p) W a + b)``."""
    p = 0.3
    net = _tiny(p_dropout=p)
    x, labels = _data(4)
    masks = net._masks(step=5, m=4)
    mask = net.backend.to_numpy(masks[1])
    assert set(np.unique(mask)) <= {0.0, 1.0} and masks[0] is None and masks[2] is None
    big = net._masks(step=6, m=4000)
    kept = float(net.backend.to_numpy(big[1]).mean())
    assert abs(kept - (1 - p)) < 4 * np.sqrt(p * (1 - p) / big[1].size)

    on = [tuple(net.backend.to_numpy(q) for q in pair) for pair in net.params]
    hidden = net.stack.feedforward(net.params[:1], net.backend.asarray(x.T))
    net._masks(step=5, m=4)
    _, grads = net.stack.backprop(net.params, net.backend.asarray(x.T),
                                  net.backend.asarray(np.eye(10)[:, labels]), masks)
    flat = net.backend.to_numpy(hidden).reshape(27, 4)
    _, want = reference_conv.backprop_loop(net.layers[1:], on[1:], flat * mask, labels)
    np.testing.assert_allclose(net.backend.to_numpy(grads[1][0]), want[0][0], atol=1e-12)

    out = net.stack.feedforward(net.params, net.backend.asarray(x.T), train=False)
    z = (1 - p) * on[1][0] @ flat + on[1][1]
    a = 1 / (1 + np.exp(-z))
    s = on[2][0] @ a + on[2][1]
    e = np.exp(s - s.max(axis=0))
    np.testing.assert_allclose(net.backend.to_numpy(out), e / e.sum(axis=0), atol=1e-12)


def test_the_device_is_respected(monkeypatch):
    """``device=`` and ``$FASTBP_DEVICE`` choose the backend; ``array-api`` takes the same steps
    as ``cpu``."""
    pytest.importorskip("fastbp_array_api", reason="the array-api plugin is not installed: "
                        'pip install -e "./backends/array_api[test]"')
    monkeypatch.setenv("FASTBP_DEVICE", "array-api")
    np.random.seed(0)
    assert Network([SoftmaxLayer(4, 3)], 2).backend.name == "array-api"
    assert Network([SoftmaxLayer(4, 3)], 2).backend.dtype == "float32"
    x, labels = _data(8)
    nets = [_tiny(device=d) for d in ("cpu", "array-api")]
    for net in nets:
        net.SGD((x, labels), 1, 4, 0.5, (x, labels), (x, labels))
    for a, b in zip(*(n.params for n in nets)):
        np.testing.assert_allclose(nets[0].backend.to_numpy(a[0]), nets[1].backend.to_numpy(b[0]),
                                   atol=1e-12)


def test_load_data_shared_reads_the_books_pickle(tmp_path):
    """A file name reads the book's gzipped pickle; ``size`` counts samples; a missing file is a
    ``DataError`` saying what to give."""
    splits = [(np.zeros((n, 784)), np.arange(n) % 10) for n in (6, 3, 2)]
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(splits), f)
    data = network3.load_data_shared(str(path))
    assert [network3.size(d) for d in data] == [6, 3, 2]
    assert data[0][0].dtype == np.float32
    with pytest.raises(DataError, match="no filename"):
        network3.load_data_shared(str(tmp_path / "missing.pkl.gz"))


def test_load_data_shared_without_a_name_finds_mnist(data_dir):
    """With no argument it finds MNIST through fastbp's loader: the book's 50,000/10,000/10,000."""
    data = network3.load_data_shared()
    assert [network3.size(d) for d in data] == [50000, 10000, 10000]


def test_mistakes_are_clear_errors():
    """Unknown activation functions, layers that do not fit, a network without a softmax top and
    an SGD batch size unlike the network's are one-line errors naming the fix."""
    with pytest.raises(ConfigError, match="network3.ReLU"):
        FullyConnectedLayer(4, 3, activation_fn=np.exp)
    with pytest.raises(ShapeError, match="make them equal"):
        Network([FullyConnectedLayer(4, 5, linear), SoftmaxLayer(6, 2)], 2)
    with pytest.raises(ConfigError, match="SoftmaxLayer"):
        Network([FullyConnectedLayer(4, 5)], 2)
    with pytest.raises(ConfigError, match="channels"):
        ConvPoolLayer((2, 3, 3, 3), (1, 1, 8, 8))
    net = Network([SoftmaxLayer(64, 10)], 2)
    with pytest.raises(ConfigError, match="differs"):
        net.SGD(_data(4), 1, 3, 0.1, _data(4), None)
    three = Network([SoftmaxLayer(64, 3)], 2)
    with pytest.raises(DataError, match="labels 0..2"):
        three.SGD(_data(8), 1, 2, 0.1, _data(8), None)


def test_a_softmax_of_any_width_takes_its_labels(capsys):
    """A three-way softmax trains on labels 0..2 (targets one-hot in three rows)."""
    x, labels = _data(8)
    labels = labels % 3
    net = Network([SoftmaxLayer(64, 3)], 4)
    net.SGD((x, labels), 1, 4, 0.1, (x, labels), (x, labels))
    assert "Corresponding test accuracy of " in capsys.readouterr().out
