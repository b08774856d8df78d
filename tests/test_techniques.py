"""Chapter 3's momentum, L1 and dropout through the public API: their checks, the velocities in
the model file (a resumed run continues bit for bit), the masks of :mod:`fastbp.core.dropout`,
and ``fastbp train --momentum --l1 --dropout`` resumed with its options. The math itself is
held to the oracle by the conformance suite (:mod:`fastbp.testing.checks_techniques`)."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp import cli
from fastbp.core import dropout
from fastbp.errors import ConfigError, ShapeError, TrainingDiverged
from fastbp.model import persist

SIZES = [12, 9, 6, 4]


def _data(n=57, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((SIZES[0], n)), rng.integers(0, SIZES[-1], n)


def _net(**kw):
    return fastbp.Network(SIZES, cost="log-likelihood", activation="relu", dtype="float64",
                          seed=4, **kw)


def _params(net):
    return [np.array(p) for p in [*net.weights, *net.biases]]


@pytest.mark.parametrize("kw,match", [
    ({"momentum": 1.0}, "momentum must be in \\[0, 1\\)"),
    ({"momentum": -0.1}, "momentum"),
    ({"l1": -1.0}, "l1"),
    ({"dropout": 1.0}, "dropout must be a probability in \\[0, 1\\)"),
    ({"dropout": "half"}, "dropout must be a probability"),
])
def test_bad_settings_are_refused_by_name(kw, match):
    X, labels = _data()
    with pytest.raises(ConfigError, match=match):
        _net().train(X, labels, epochs=1, batch_size=10, eta=0.1, **kw)


def test_dropout_needs_a_hidden_layer():
    X, labels = _data()
    net = fastbp.Network([12, 4], seed=1)
    with pytest.raises(ConfigError, match="no hidden layer"):
        net.train(X, labels, epochs=1, batch_size=10, eta=0.1, dropout=0.5)


def test_masks_keep_about_one_minus_p_and_scale_the_kept():
    for p in (0.2, 0.5, 0.8):
        d = dropout.mask(dropout.step_key(123, 7, 1), p, 200, 500)
        kept = d > 0
        assert abs(kept.mean() - (1 - p)) < 0.01
        assert np.all(d[kept] == 1 / (1 - p))
    # another step, layer or seed draws another mask; the same numbers the same one
    a = dropout.mask(dropout.step_key(1, 0, 0), 0.5, 30, 10)
    assert np.array_equal(a, dropout.mask(dropout.step_key(1, 0, 0), 0.5, 30, 10))
    for key in (dropout.step_key(1, 1, 0), dropout.step_key(1, 0, 1), dropout.step_key(2, 0, 0)):
        assert not np.array_equal(a, dropout.mask(key, 0.5, 30, 10))


def test_the_hash_on_ints_and_on_arrays_agrees():
    """The scalar form (mask keys) and the array form (masks) of the one hash agree, and both
    wrap at 32 bits."""
    assert dropout.mix(0) == 0 and dropout.mix(1 << 32) == 0
    xs = np.arange(1000, dtype=np.uint32) * np.uint32(2654435761)
    assert [dropout.mix(int(x)) for x in xs] == list(dropout.mix_array(np, xs))


def test_momentum_velocities_resume_bit_for_bit(tmp_path):
    X, labels = _data()
    kw = {"batch_size": 10, "eta": 0.2, "lmbda": 1.0, "momentum": 0.9, "l1": 0.5,
          "dropout": 0.3}
    straight = _net()
    straight.train(X, labels, epochs=3, **kw)
    half = _net()
    half.train(X, labels, epochs=2, **kw)
    assert half.velocities is not None and any(np.any(v) for v in half.velocities)
    half.save(tmp_path / "half.npz")
    resumed = fastbp.load(tmp_path / "half.npz")
    assert all(np.array_equal(a, b) for a, b in zip(resumed.velocities, half.velocities))
    resumed.train(X, labels, epochs=1, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(_params(resumed), _params(straight)))
    assert all(np.array_equal(a, b) for a, b in zip(resumed.velocities, straight.velocities))


def test_plain_training_keeps_no_velocities(tmp_path):
    X, labels = _data()
    net = _net()
    net.train(X, labels, epochs=1, batch_size=10, eta=0.1)
    assert net.velocities is None
    net.save(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz") as npz:
        assert not any(name.startswith("velocity_") for name in npz.files)
    assert fastbp.load(tmp_path / "plain.npz").velocities is None


def test_velocities_move_with_the_network_and_are_checked():
    X, labels = _data()
    net = _net()
    net.train(X, labels, epochs=1, batch_size=10, eta=0.1, momentum=0.5)
    other = net.to("cpu")
    assert all(np.array_equal(a, b) for a, b in zip(other.velocities, net.velocities))
    with pytest.raises(ShapeError, match=r"expected \d+ arrays for velocities, got 1"):
        net.velocities = [np.zeros(3)]


def test_a_file_with_some_velocities_missing_is_refused(tmp_path):
    from fastbp.errors import ModelFormatError

    X, labels = _data()
    net = _net()
    net.train(X, labels, epochs=1, batch_size=10, eta=0.1, momentum=0.5)
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if k != "velocity_biases_1"}
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ModelFormatError, match="missing velocity_biases_1"):
        fastbp.load(tmp_path / "cut.npz")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_gives_back_the_velocities_too():
    X, labels = _data()
    net = _net()
    net.train(X, labels, epochs=1, batch_size=10, eta=0.1, momentum=0.9)
    before = net.velocities
    with pytest.raises(TrainingDiverged):
        net.train(X * 1e200, labels, epochs=1, batch_size=10, eta=1e200, momentum=0.9)
    assert all(np.array_equal(a, b) for a, b in zip(net.velocities, before))


def test_dropout_changes_training_and_evaluation_runs_the_whole_network():
    X, labels = _data()
    a, b = _net(), _net()
    a.train(X, labels, epochs=1, batch_size=10, eta=0.1)
    b.train(X, labels, epochs=1, batch_size=10, eta=0.1, dropout=0.5)
    assert not np.allclose(_params(a)[0], _params(b)[0])
    # evaluation is deterministic: no mask outside training
    assert np.array_equal(b.feedforward(X), b.feedforward(X))


def test_a_progress_bar_does_not_change_the_masks():
    """An epoch run in slices (the progress hook) draws the masks of one whole epoch."""
    X, labels = _data(n=203)
    a, b = _net(), _net()
    kw = {"epochs": 2, "batch_size": 10, "eta": 0.1, "dropout": 0.4, "momentum": 0.5}
    a.train(X, labels, **kw)
    b.train(X, labels, progress=lambda done, cost, n: None, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(_params(a), _params(b)))


# -- the command line -----------------------------------------------------------------------------
QUICK = ["--limit", "500", "--dtype", "float64", "--seed", "3", "--batch-size", "10", "--quiet",
         "--sizes", "784,20,10", "--cost", "log-likelihood", "--activation", "relu"]


def test_cli_resume_keeps_momentum_dropout_expand_and_schedule(data_dir, tmp_path):
    opts = ["--eta", "0.05", "--momentum", "0.8", "--l1", "0.1", "--dropout", "0.2",
            "--limit", "200", "--expand", "--schedule", "1,5"]
    assert cli.main(["train", *QUICK, *opts, "--epochs", "3",
                     "--save", str(tmp_path / "straight.npz")]) == 0
    assert cli.main(["train", *QUICK, *opts, "--epochs", "2",
                     "--save", str(tmp_path / "half.npz")]) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "half.npz"), "--epochs", "3",
                     "--quiet"]) == 0
    a = persist.load_checkpoint(tmp_path / "straight.npz")
    b = persist.load_checkpoint(tmp_path / "half.npz")
    assert all(np.array_equal(x, y) for x, y in zip(_params(a.network), _params(b.network)))
    assert all(np.array_equal(x, y) for x, y in zip(a.network.velocities, b.network.velocities))
    train = b.extra["train"]
    assert (train["momentum"], train["l1"], train["dropout"], train["expand"],
            train["schedule"]) == (0.8, 0.1, 0.2, True, [1, 5])
    assert a.extra["schedule"] == b.extra["schedule"]


def test_parameter_lists_pickle_as_lists_of_host_copies():
    """MPI sends ``net.velocities`` and ``net.weights`` pickled: they arrive as plain lists."""
    import pickle

    import numpy as np

    import fastbp

    net = fastbp.Network([4, 3, 2], seed=1, dtype="float64")
    net.velocities = [np.full(p.shape, 0.5) for p in [*net.weights, *net.biases]]
    got = pickle.loads(pickle.dumps(net.velocities))
    assert isinstance(got, list) and len(got) == 4 and np.all(got[0] == 0.5)
    assert np.array_equal(pickle.loads(pickle.dumps(net.weights))[1], net.weights[1])
