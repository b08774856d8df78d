"""``fastbp.Network(layers)``: a stack of chapter 6's layer kinds trained through the one driver.

One epoch equals a hand-run of ``Stack.backprop`` and the documented update in float64 (plain
with L2, and with momentum and L1); the devices agree to float64 rounding; a small conv network
passes the gradient check; a fully connected stack is offered to the device's own epoch and a
conv stack is not; bad stacks are refused by name; an interrupted epoch rolls back.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.core.layers import Stack
from fastbp.core.layers import epoch as layer_epoch
from fastbp.errors import ConfigError, DeviceError, ShapeError
from fastbp.layers import ConvPool, FullyConnected, Softmax
from fastbp.testing.oracle import ATOL


def conv_layers(p_dropout=0.0):
    return [ConvPool((3, 1, 3, 3), (1, 8, 8), (2, 2), "relu"),
            FullyConnected(3 * 3 * 3, 6, "tanh", p_dropout),
            Softmax(6, 4)]


def data(n=23, n_in=64, classes=4, seed=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_in, n)), rng.integers(0, classes, size=n)


def random_softmax(net, seed=9):
    """The softmax layer starts at 0; draw it away from 0 so every layer's gradient shows."""
    rng = np.random.default_rng(seed)
    w = list(net.weights)
    w[-1] = rng.normal(size=w[-1].shape) * 0.5
    net.weights = w
    b = list(net.biases)
    b[-1] = rng.normal(size=b[-1].shape) * 0.5
    net.biases = b


def hand_epoch(layers, weights, biases, X, labels, batch, eta, lmbda=0.0, mu=0.0, l1=0.0,
               velocities=None):
    """The epoch in order, by ``Stack.backprop`` on cpu and the update written out in NumPy."""
    be = fastbp.devices.resolve("cpu", "float64")
    stack = Stack(be, layers)
    w = [np.array(a) for a in weights]
    b = [np.array(a) for a in biases]
    n = X.shape[1]
    Y = np.eye(layers[-1].n_out)[:, labels]
    for start in range(0, n, batch):
        x = np.ascontiguousarray(X[:, start:start + batch])
        m = x.shape[1]
        _, grads = stack.backprop(list(zip(w, b)), x, np.ascontiguousarray(Y[:, start:start + m]))
        for l, (gw, gb) in enumerate(grads):
            if velocities is None:
                w[l] = (1 - eta * lmbda / n) * w[l] - (eta / m) * gw
                b[l] = b[l] - (eta / m) * gb
            else:
                vw, vb = velocities[l], velocities[len(w) + l]
                vw[...] = mu * vw - (eta / m) * gw - (eta * lmbda / n) * w[l] \
                    - (eta * l1 / n) * np.sign(w[l])
                vb[...] = mu * vb - (eta / m) * gb
                w[l] = w[l] + vw
                b[l] = b[l] + vb
    return w, b


def assert_params(got, want, atol=ATOL):
    for i, (g, h) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(np.asarray(g), h, rtol=0, atol=atol, err_msg=f"array {i}")


@pytest.mark.parametrize("lmbda", [0.0, 0.5])
def test_one_epoch_is_backprop_and_the_update(lmbda):
    """Plain SGD with L2 (``W ← (1 − ηλ/n) W − (η/m) ∂C/∂W``, biases not decayed), batches in
    order, a short last batch of 3."""
    net = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=1)
    random_softmax(net)
    X, labels = data()
    w0, b0 = list(net.weights), list(net.biases)
    net.train(X, labels, epochs=1, batch_size=5, eta=0.3, lmbda=lmbda, shuffle=False)
    w, b = hand_epoch(net.layers, w0, b0, X, labels, 5, 0.3, lmbda)
    assert_params(net.weights, w)
    assert_params(net.biases, b)
    assert np.max(np.abs(np.asarray(net.weights[0]) - w0[0])) > 1e-3  # it did learn


def test_momentum_l1_and_l2_go_through_the_velocities():
    """``v ← μ v − (η/m) ∂C/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v`` (biases: the first
    two terms), over two epochs; the velocities stay with the network."""
    net = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=2)
    random_softmax(net)
    X, labels = data()
    w, b = list(net.weights), list(net.biases)
    v = [np.zeros(a.shape) for a in w + b]
    net.train(X, labels, epochs=2, batch_size=4, eta=0.2, lmbda=0.3, momentum=0.7, l1=0.1,
              shuffle=False)
    for _ in range(2):
        w, b = hand_epoch(net.layers, w, b, X, labels, 4, 0.2, 0.3, 0.7, 0.1, v)
    assert_params(net.weights, w)
    assert_params(net.biases, b)
    assert_params(net.velocities, v)


def device_or_skip(name):
    try:
        return fastbp.devices.resolve(name, "float64")
    except DeviceError as exc:
        pytest.skip(f"device {name} is not available here: {exc}")


@pytest.mark.parametrize("device", ["cpu-jit", "array-api"])
@pytest.mark.parametrize("p_dropout", [0.0, 0.4])
def test_devices_agree_to_float64_rounding(device, p_dropout):
    """The same network, seed and data on another device: parameters after two shuffled epochs
    with momentum (and network3's dropout) within float64 rounding of ``cpu``'s."""
    backend = device_or_skip(device)
    X, labels = data(n=30)
    nets = [fastbp.Network(conv_layers(p_dropout), device=d, dtype="float64", seed=4)
            for d in ("cpu", backend)]
    for net in nets:
        net.train(X, labels, epochs=2, batch_size=7, eta=0.1, momentum=0.5, lmbda=0.1)
    assert nets[1].device.startswith(device)
    assert_params(nets[1].weights, [np.asarray(a) for a in nets[0].weights])
    assert_params(nets[1].biases, [np.asarray(a) for a in nets[0].biases])
    assert [r.cost for r in nets[1].history] == pytest.approx(
        [r.cost for r in nets[0].history], rel=1e-12)


def test_dropout_masks_change_training_and_the_evaluation_scales():
    """``p_dropout`` of a fully connected layer: training differs from the same net without it;
    ``feedforward`` scales that layer's ``W a`` by ``1 − p`` (network3's rule)."""
    X, labels = data()
    nets = [fastbp.Network(conv_layers(p), device="cpu", dtype="float64", seed=3)
            for p in (0.0, 0.5)]
    assert_params(nets[1].weights, [np.asarray(a) for a in nets[0].weights], atol=0)
    for net in nets:
        net.train(X, labels, epochs=1, batch_size=5, eta=0.3)
    assert not np.allclose(nets[0].weights[1], nets[1].weights[1])


def test_gradcheck_of_a_conv_network():
    net = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=6)
    random_softmax(net)
    X, labels = data(n=4)
    Y = np.eye(4)[:, labels]
    assert fastbp.gradcheck(net, X, Y, eps=1e-6, max_entries=30) < 1e-6


def test_a_fully_connected_stack_runs_the_devices_own_epoch(monkeypatch):
    """A stack that is ``Network(sizes)``'s (relu layers, softmax, no dropout) is offered to the
    device's own epoch, and gives what the generic layer epoch gives; a conv stack never is."""
    X, labels = data(n=40, n_in=12)
    layers = [FullyConnected(12, 8, "relu"), Softmax(8, 4)]
    assert layer_epoch.dense_form(layers) == ([12, 8, 4], ("relu", "softmax"))
    assert layer_epoch.dense_form(conv_layers()) is None
    assert layer_epoch.dense_form([FullyConnected(12, 8, "relu", 0.5), Softmax(8, 4)]) is None
    own = fastbp.Network(layers, device="cpu", dtype="float64", seed=8)
    generic = own.to("cpu")
    offered = []
    be = own.backend
    real = type(be).sgd_epoch
    monkeypatch.setattr(be, "sgd_epoch", lambda plan: offered.append(plan) or real(be, plan))
    own.train(X, labels, epochs=2, batch_size=6, eta=0.2, momentum=0.3)
    assert len(offered) == 2 and offered[0].layers.sizes == [12, 8, 4]
    monkeypatch.setattr(generic.backend, "sgd_epoch", lambda plan: None)
    generic.train(X, labels, epochs=2, batch_size=6, eta=0.2, momentum=0.3)
    assert_params(own.weights, [np.asarray(a) for a in generic.weights])
    conv = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=8)
    monkeypatch.setattr(conv.backend, "sgd_epoch",
                        lambda plan: pytest.fail("a conv stack was offered to the own epoch"))
    conv.train(*data(), epochs=1, batch_size=5, eta=0.1)


def test_the_api_of_a_layer_network():
    net = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=1)
    assert isinstance(net, fastbp.Network) and isinstance(net, fastbp.LayerNetwork)
    assert net.sizes == [64, 27, 6, 4] and net.kinds == ("relu", "tanh", "softmax")
    assert [w.shape for w in net.weights] == [(3, 9), (6, 27), (4, 6)]
    assert [b.shape for b in net.biases] == [(3, 1), (6, 1), (4, 1)]
    with pytest.raises(ConfigError, match="read-only"):
        net.weights[0][0, 0] = 1.0
    assert repr(net) == ("Network([ConvPool((3, 1, 3, 3), (1, 8, 8), (2, 2), 'relu'), "
                         "FullyConnected(27, 6, 'tanh', 0.0), Softmax(6, 4, 0.0)], "
                         "device='cpu', dtype='float64')")
    X, labels = data()
    a = net.feedforward(X)
    assert a.shape == (4, 23) and np.allclose(a.sum(axis=0), 1.0)
    assert list(net.predict(X)) == list(a.argmax(axis=0))
    assert net.count_correct(X, labels) == int(np.sum(a.argmax(axis=0) == labels))
    assert net.accuracy(X, labels) == net.count_correct(X, labels) / 23
    history = net.train(X, labels, epochs=2, batch_size=5, eta=0.1, test=(X, labels))
    assert len(net.history) == 2 and history[-1].correct == net.count_correct(X, labels)
    other = net.to("cpu")
    np.testing.assert_array_equal(other.feedforward(X), net.feedforward(X))
    # the same seed, the same draws: network3's per layer, in order
    again = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    for layer, w, b in zip(again.layers, again.weights, again.biases):
        want_w, want_b = layer.init(rng)
        np.testing.assert_array_equal(w, want_w)
        np.testing.assert_array_equal(b, want_b)


def test_sizes_networks_are_unchanged():
    net = fastbp.Network([4, 3, 2], device="cpu", seed=0)
    assert type(net) is fastbp.Network
    assert repr(net).startswith("Network([4, 3, 2], cost=QuadraticCost")


@pytest.mark.parametrize("layers, error, words", [
    (lambda: [FullyConnected(4, 3)], ConfigError, "ends in fastbp.layers.Softmax"),
    (lambda: [FullyConnected(4, 3), Softmax(5, 2)], ShapeError, "gives 3 outputs"),
    (lambda: [ConvPool((2, 1, 3, 3), (1, 6, 6)), Softmax(10, 2)], ShapeError, "gives 8"),
    (lambda: [Softmax(4, 4), Softmax(4, 2)], ConfigError, "below the top"),
    (lambda: [FullyConnected(4, 3), "softmax"], ConfigError, "layer 1 is str"),
])
def test_bad_stacks_are_refused_by_name(layers, error, words):
    with pytest.raises(error, match=words):
        fastbp.Network(layers(), device="cpu")


def test_options_that_do_not_apply_are_refused():
    layers = [FullyConnected(4, 3), Softmax(3, 2)]
    with pytest.raises(ConfigError, match="log-likelihood"):
        fastbp.Network(layers, cost=fastbp.QuadraticCost, device="cpu")
    with pytest.raises(ConfigError, match="activation"):
        fastbp.Network(layers, activation="relu", device="cpu")
    net = fastbp.Network(layers, device="cpu")
    X = np.zeros((4, 6))
    with pytest.raises(ConfigError, match="p_dropout"):
        net.train(X, np.zeros(6, int), epochs=1, batch_size=2, eta=0.1, dropout=0.5)
    with pytest.raises(ShapeError):
        net.train(np.zeros((5, 6)), np.zeros(6, int), epochs=1, batch_size=2, eta=0.1)
    with pytest.raises(ConfigError, match="network2"):
        net.save("x.json", format="network2")
    with pytest.raises(ConfigError, match="trains in one process"):
        net.epoch_plan(X, np.zeros(6, int), batch_size=2, eta=0.1)
    with pytest.raises(ConfigError, match="draws its parameters as its layers define"):
        net.default_weight_initializer()


def test_an_interrupted_epoch_rolls_back():
    net = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=1)
    X, labels = data(n=200)
    net.train(X, labels, epochs=1, batch_size=5, eta=0.1)
    before = [np.array(a) for a in net.weights + net.biases]
    state = net.rng.bit_generator.state

    def stop(done, cost, n):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.train(X, labels, epochs=1, batch_size=5, eta=0.1, progress=stop)
    assert_params(net.weights + net.biases, before, atol=0)
    assert len(net.history) == 1 and net.rng.bit_generator.state == state


def test_divergence_is_caught_and_rolled_back():
    net = fastbp.Network([FullyConnected(64, 6, "relu"), Softmax(6, 4)], device="cpu",
                         dtype="float64", seed=1)
    X, labels = data()
    before = [np.array(a) for a in net.weights + net.biases]
    with pytest.raises(fastbp.TrainingDiverged):
        net.train(X * 1e300, labels, epochs=1, batch_size=5, eta=1e300)
    assert_params(net.weights + net.biases, before, atol=0)


@pytest.mark.slow
def test_a_short_mnist_run_learns(mnist):
    net = fastbp.Network([ConvPool((8, 1, 5, 5), (1, 28, 28), (2, 2), "relu"),
                          FullyConnected(8 * 12 * 12, 100, "relu"), Softmax(100, 10)],
                         device="cpu", seed=0)
    net.train(mnist.train.X[:, :3000], mnist.train.labels[:3000], epochs=1, batch_size=10,
              eta=0.1)
    assert net.accuracy(mnist.test.X[:, :1000], mnist.test.labels[:1000]) >= 0.75


@pytest.mark.parametrize("device", ["cpu", "cpu-jit"])
def test_a_progress_bar_slices_a_layer_epoch(device):
    """With ``progress`` the epoch runs in slices (a device that plans its epochs is not handed
    a conv stack to plan); the result is that of one call."""
    device_or_skip(device)
    X, labels = data(n=60)
    nets = [fastbp.Network(conv_layers(0.3), device=device, dtype="float64", seed=4)
            for _ in range(2)]
    calls = []
    nets[0].train(X, labels, epochs=1, batch_size=5, eta=0.1,
                  progress=lambda done, cost, n: calls.append(done))
    nets[1].train(X, labels, epochs=1, batch_size=5, eta=0.1)
    assert len(calls) > 2 and calls[-1] == 60
    assert_params(nets[0].weights, [np.asarray(a) for a in nets[1].weights])


def test_a_schedule_sets_each_epochs_rate():
    """A schedule that halves η after an epoch without improvement: the next epoch steps (and
    decays) with η/2, as a run at that rate does."""

    class Halve:  # the schedule protocol of the driver: begin, then a call per epoch
        def begin(self, eta):
            self.eta = eta
            return eta

        def __call__(self, record, net):
            self.eta /= 2

    X, labels = data()
    scheduled = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=5)
    scheduled.train(X, labels, epochs=2, batch_size=5, eta=0.2, lmbda=0.3, schedule=Halve(),
                    shuffle=False)
    by_hand = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=5)
    by_hand.train(X, labels, epochs=1, batch_size=5, eta=0.2, lmbda=0.3, shuffle=False)
    by_hand.train(X, labels, epochs=1, batch_size=5, eta=0.1, lmbda=0.3, shuffle=False)
    assert_params(scheduled.weights + scheduled.biases,
                  [np.asarray(a) for a in by_hand.weights + by_hand.biases], atol=0)
    other = fastbp.Network(conv_layers(), device="cpu", dtype="float64", seed=5)
    other.train(X, labels, epochs=2, batch_size=5, eta=0.2, lmbda=0.3, shuffle=False)
    assert not np.allclose(other.weights[0], scheduled.weights[0], rtol=0, atol=1e-9)
