"""Non-finite values: the per-epoch guard stops training with ``TrainingDiverged`` naming the epoch
and layer, and the network keeps the parameters of its last finite epoch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastbp
from fastbp.core.costs import CrossEntropyCost
from fastbp.core.guard import DivergenceWarning
from fastbp.devices import registry as devices

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:fastbp")

SIZES = [20, 8, 4]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.random((SIZES[0], 200)), rng.integers(0, SIZES[-1], 200)


class NanInjecting(fastbp.NumpyBackend):
    """The CPU backend, except that epoch ``at`` writes a NaN (or a non-finite cost) somewhere."""

    name = "nan-inject"
    at, layer, what = 2, 1, "biases"  # set by the tests
    counted = 0

    def __init__(self, dtype: str = "float32", index: int = 0) -> None:
        super().__init__(dtype=dtype, index=index)
        self.epochs = 0
        self.finite_checks = 0

    def sgd_epoch(self, plan):  # type: ignore[override]
        cost = super().sgd_epoch(plan)
        self.epochs += 1
        if self.epochs - 1 == type(self).at:
            if self.what == "cost":
                return float("inf")
            params = plan.params
            target = (params.weights if self.what == "weights" else params.biases)[self.layer]
            target[0, 0] = np.nan
        return cost

    def all_finite(self, a):  # type: ignore[override]
        self.finite_checks += 1
        return super().all_finite(a)


@pytest.fixture
def nan_backend():
    fastbp.register_backend("nan-inject", NanInjecting)
    yield NanInjecting
    devices._registered.pop("nan-inject", None)
    NanInjecting.at, NanInjecting.layer, NanInjecting.what = 2, 1, "biases"


def params(net: fastbp.Network) -> list[np.ndarray]:
    return [*net.weights, *net.biases]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_huge_eta_stops_in_the_first_epoch_with_the_initial_parameters(data) -> None:
    net = fastbp.Network(SIZES, seed=1)
    before = params(net)
    with pytest.raises(fastbp.TrainingDiverged) as info:
        net.train(*data, epochs=3, batch_size=10, eta=1e300)
    err = info.value
    assert (err.epoch, err.layer, err.parameter, err.last_finite_epoch) == (0, 2, "weights", None)
    assert "epoch 0" in str(err) and "layer 2" in str(err) and "eta (it is 1e+300)" in str(err)
    assert_same(params(net), before)
    history = net.train(*data, epochs=2, batch_size=10, eta=1.0)  # still usable
    assert all(np.isfinite(r.cost) for r in history)
    assert all(np.isfinite(p).all() for p in params(net))


def test_float16_overflow(data) -> None:
    net = fastbp.Network(SIZES, seed=1, dtype="float16")
    before = params(net)
    with pytest.raises(fastbp.TrainingDiverged, match=r"float16.*dtype='float32'"):
        net.train(*data, epochs=2, batch_size=10, eta=1e6)  # η/m = 1e5 > 65504
    assert_same(params(net), before)


@pytest.mark.parametrize("layer,what", [(0, "weights"), (1, "biases"), (1, "weights")])
def test_plugged_in_backend_injecting_nan(data, nan_backend, layer: int, what: str) -> None:
    """NaN in epoch 2: the error names epoch 2 and the layer, the network is as after epoch 1."""
    nan_backend.at, nan_backend.layer, nan_backend.what = 2, layer, what
    net = fastbp.Network(SIZES, seed=3, device="nan-inject")
    clean = fastbp.Network(SIZES, seed=3)
    clean.train(*data, epochs=2, batch_size=10, eta=0.5)
    with pytest.raises(fastbp.TrainingDiverged) as info:
        net.train(*data, epochs=5, batch_size=10, eta=0.5)
    err = info.value
    assert (err.epoch, err.layer, err.parameter) == (2, layer + 2, what)
    assert err.last_finite_epoch == 1 and "epoch 1, the last finite one" in str(err)
    assert_same(params(net), params(clean))
    assert len(net.history) == 2  # the diverged epoch is not recorded


def test_non_finite_cost_with_finite_parameters(data, nan_backend) -> None:
    nan_backend.at, nan_backend.what = 1, "cost"
    net = fastbp.Network(SIZES, seed=3, device="nan-inject")
    clean = fastbp.Network(SIZES, seed=3)
    clean.train(*data, epochs=1, batch_size=10, eta=0.5)
    with pytest.raises(fastbp.TrainingDiverged, match="epoch 1.*cost is inf") as info:
        net.train(*data, epochs=3, batch_size=10, eta=0.5)
    assert info.value.layer is None and info.value.parameter == "cost"
    assert_same(params(net), params(clean))


def test_epochs_continue_numbering_across_calls(data, nan_backend) -> None:
    nan_backend.at = 1  # the backend's second epoch, the network's fourth
    net = fastbp.Network(SIZES, seed=3)
    net.train(*data, epochs=2, batch_size=10, eta=0.5)
    net = net.to("nan-inject")
    with pytest.raises(fastbp.TrainingDiverged, match="in epoch 3") as info:
        net.train(*data, epochs=3, batch_size=10, eta=0.5)
    assert info.value.last_finite_epoch == 2


def test_on_diverge_continue_warns_once_and_goes_on(data) -> None:
    net = fastbp.Network(SIZES, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = net.train(*data, epochs=3, batch_size=10, eta=1e300, on_diverge="continue")
    ours = [w for w in caught if issubclass(w.category, DivergenceWarning)]
    assert len(ours) == 1 and "training goes on" in str(ours[0].message)
    assert len(history) == 3 and all(np.isnan(r.cost) for r in history)


@pytest.mark.parametrize("bad", ["stop", "", None, True])
def test_on_diverge_must_be_known(data, bad) -> None:
    net = fastbp.Network(SIZES, seed=1)
    with pytest.raises(fastbp.ConfigError, match="on_diverge must be one of"):
        net.train(*data, epochs=1, batch_size=10, eta=1.0, on_diverge=bad)


def test_the_check_is_per_epoch_not_per_step(data, nan_backend) -> None:
    nan_backend.at = 99
    net = fastbp.Network(SIZES, seed=3, device="nan-inject")
    X = data[0].astype(np.float32)  # float32 data need no check of the cast
    net.train(X, data[1], epochs=4, batch_size=10, eta=0.5)  # 20 steps an epoch
    assert net.backend.finite_checks == 4 * 2 * (len(SIZES) - 1)


def test_the_book_sgd_is_guarded_too(data, capsys) -> None:
    X, labels = data
    pairs = [(X[:, [i]], np.eye(SIZES[-1])[:, [k]]) for i, k in enumerate(labels)]
    with pytest.raises(fastbp.TrainingDiverged):
        fastbp.Network(SIZES, seed=1).SGD(pairs, 2, 10, 1e300)


# -- the cross-entropy cost at saturated outputs ---------------------------------------------
def test_cross_entropy_fn_is_finite_at_saturated_outputs() -> None:
    y = np.array([[1.0], [0.0]])
    assert CrossEntropyCost.fn(np.array([[1.0], [0.0]]), y) == 0.0  # 0·ln 0 is 0, not NaN
    wrong = CrossEntropyCost.fn(np.array([[0.0], [1.0]]), y)  # as wrong as it gets
    assert np.isfinite(wrong) and wrong > 1000


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_cross_entropy_output_error_is_finite_at_saturated_outputs(dtype: str) -> None:
    be = fastbp.NumpyBackend(dtype=dtype)
    a = be.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    y = be.asarray([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    out, scratch = be.empty((2, 3)), be.empty((2, 3))
    cost = float(CrossEntropyCost.output_error(be, a, y, out, scratch))
    assert np.isfinite(cost) and cost > 0
    np.testing.assert_array_equal(out, a - y)  # BP1: δ^L = a − y, finite whatever a is


def test_cross_entropy_training_on_a_saturated_network_stays_finite(data) -> None:
    """Huge weights saturate every output at 0 or 1: the epoch cost stays finite, no divergence."""
    net = fastbp.Network(SIZES, seed=1, cost="cross-entropy", dtype="float64")
    net.weights = [w * 1e4 for w in net.weights]
    history = net.train(*data, epochs=2, batch_size=10, eta=0.1)
    assert all(np.isfinite(r.cost) for r in history)
    assert net.total_cost(data[0][:, :5], np.eye(SIZES[-1])[:, data[1][:5]]) < np.inf
