"""Values read back from files, or given to a network, are checked as the same values given in
code: a damaged random state or history, a network2 JSON with odd types, velocities with NaN or
an in-place edit; and a divergence names the step's terms as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastbp
from fastbp.core.guard import DivergenceGuard
from fastbp.io import checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SIZES = [6, 4, 3]


def _data(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.random((SIZES[0], n)), rng.integers(0, SIZES[-1], n)


def _trained(momentum: float = 0.5) -> fastbp.Network:
    net = fastbp.Network(SIZES, seed=2, device="cpu")
    net.train(*_data(), epochs=1, batch_size=10, eta=0.5, momentum=momentum)
    return net


def _rewrite(src, dst, change) -> None:
    """``src`` with its metadata JSON changed by ``change(meta)``, written to ``dst``."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["metadata"].tobytes())
    change(meta)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)


# -- model files ---------------------------------------------------------------------------------
def test_a_random_state_with_a_wrong_key_length_is_one_line(tmp_path):
    _trained().save(tmp_path / "m.npz")

    def short_key(meta):
        state = checkpoint._to_json(np.random.MT19937(1).state)
        state["state"]["key"]["__ndarray__"] = state["state"]["key"]["__ndarray__"][:10]
        meta["rng"] = state

    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", short_key)
    says = r"invalid random state \(MT19937: its key holds 10 numbers, not 624\)"
    with pytest.raises(fastbp.ModelFormatError, match=says):
        fastbp.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("key, value", [("accuracy", "high"), ("accuracy", 7.0),
                                        ("cost", None), ("epoch", 1.5), ("correct", True)])
def test_a_history_entry_of_the_wrong_type_is_refused(tmp_path, key, value):
    _trained().save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz",
             lambda meta: meta["history"][0].__setitem__(key, value))
    with pytest.raises(fastbp.ModelFormatError, match=f"history entry 0 has {key}"):
        fastbp.load(tmp_path / "bad.npz")


def _network2(tmp_path, change):
    net = fastbp.Network(SIZES, seed=2, cost="cross-entropy")
    net.save(tmp_path / "ok.json", format="network2")
    doc = json.loads((tmp_path / "ok.json").read_text())
    change(doc)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    return tmp_path / "bad.json"


def test_a_network2_cost_that_is_a_list_is_one_line(tmp_path):
    path = _network2(tmp_path, lambda doc: doc.update(cost=["CrossEntropyCost"]))
    with pytest.raises(fastbp.ModelFormatError, match="unknown cost"):
        fastbp.load(path)


@pytest.mark.parametrize("value", ["1.5", True, False, {"x": 1}])
@pytest.mark.parametrize("where", ["weights", "biases"])
def test_network2_numbers_given_as_strings_or_booleans_are_refused(tmp_path, where, value):
    path = _network2(tmp_path, lambda doc: doc[where][1][0].__setitem__(0, value))
    says = rf"{where}\[1\] is not a matrix of numbers \(it holds"
    with pytest.raises(fastbp.ModelFormatError, match=says):
        fastbp.load(path)


# -- velocities ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_velocities_refuse_nan_and_inf_as_weights_do(bad):
    net = _trained()
    before = [np.array(v) for v in net.velocities]
    values = [np.array(v) for v in before]
    values[-1][0, 0] = bad
    with pytest.raises(fastbp.ShapeError, match=r"velocities\[3\] \(layer 3\) contains NaN"):
        net.velocities = values
    assert all(np.array_equal(a, b) for a, b in zip(net.velocities, before))  # all or nothing
    with pytest.raises(fastbp.ShapeError, match="must have shape"):
        net.velocities = [np.zeros((4, 5)), *before[1:]]


def test_an_in_place_edit_of_the_velocities_is_refused_not_lost():
    net = _trained()
    v = net.velocities
    with pytest.raises(fastbp.ConfigError, match=r"net.velocities\[0\] is a read-only copy"):
        v[0][0, 0] = 1.0
    with pytest.raises(fastbp.ConfigError, match="read-only"):
        v[1] += 1.0
    edited = v[0].copy()
    edited[0, 0] = 0.25
    net.velocities[0] = edited  # the way the message gives
    assert net.velocities[0][0, 0] == 0.25


def test_a_network_without_velocities_gets_them_by_assignment():
    net = fastbp.Network(SIZES, seed=2, device="cpu")
    assert net.velocities is None
    net.velocities = [np.full(np.shape(p), 0.5) for p in [*net.weights, *net.biases]]
    assert all(np.all(np.asarray(v) == 0.5) for v in net.velocities)


# -- the divergence message ----------------------------------------------------------------------
def test_divergence_names_the_steps_terms_as_they_are():
    net = fastbp.Network([20, 8, 4], seed=1, device="cpu")  # float32: η = 1e300 overflows
    rng = np.random.default_rng(7)
    X, y = rng.random((20, 200)), rng.integers(0, 4, 200)
    with pytest.raises(fastbp.TrainingDiverged) as info:
        net.train(X, y, epochs=2, batch_size=10, eta=1e300, l1=2.0, momentum=0.5, lmbda=0.0)
    text = str(info.value)
    assert "η = 1e+300" in text and "λ₁ = 2" in text and "μ = 0.5" in text and "λ = 0" in text
    assert "a smaller l1 (it is 2)" in text and "a smaller momentum (it is 0.5)" in text
    assert "a smaller lmbda" not in text  # λ = 0 is not in the step
    cli = info.value.message_for({"eta": "--eta", "l1": "--l1", "mu": "--momentum"})
    assert "--l1 (it is 2)" in cli and "on_diverge" not in cli


def test_divergence_blames_the_rate_the_schedule_set_not_the_argument():
    net = fastbp.Network([20, 8, 4], seed=1, device="cpu")  # float32: η = 1e300 overflows
    rng = np.random.default_rng(7)
    X, y = rng.random((20, 200)), rng.integers(0, 4, 200)
    schedule = fastbp.LearningRateSchedule(2, 2)
    schedule.load_state({"eta": 1e300})  # a saved rate
    with pytest.raises(fastbp.TrainingDiverged) as info:
        net.train(X, y, epochs=2, batch_size=10, eta=0.1, schedule=schedule, test=(X, y))
    assert "η = 1e+300" in str(info.value) and "eta (it is 1e+300)" in str(info.value)


def test_a_guard_given_eta_alone_still_names_it():
    be = fastbp.NumpyBackend()
    w = [be.asarray(np.full((2, 2), np.nan))]
    b = [be.asarray(np.zeros((2, 1)))]
    guard = DivergenceGuard(be, w, b, eta=3.0)
    guard.eta = 1.5  # as the driver sets it between epochs
    with pytest.raises(fastbp.TrainingDiverged, match=r"η = 1\.5.*a smaller eta \(it is 1\.5\)"):
        guard.check(0, 1.0)
