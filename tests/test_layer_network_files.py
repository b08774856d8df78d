"""Saving and loading a layer network: the layer stack as specs in the file (format version 4),
parameters bit for bit, training resumed as if never stopped; bad specs refused by name."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import fastbp
from fastbp.core.layers.spec import describe, from_spec, to_spec
from fastbp.errors import ConfigError, ModelFormatError
from fastbp.layers import ConvPool, FullyConnected, Softmax


def layers():
    return [ConvPool((3, 1, 3, 3), (1, 8, 8), (2, 2), "relu"),
            FullyConnected(27, 6, "tanh", 0.25), Softmax(6, 4, 0.1)]


def data(n=30):
    rng = np.random.default_rng(5)
    return rng.normal(size=(64, n)), rng.integers(0, 4, size=n)


def test_every_layer_kind_round_trips_through_its_spec():
    for layer in layers():
        spec = to_spec(layer)
        assert json.loads(json.dumps(spec)) == spec
        again = from_spec(spec)
        assert type(again) is type(layer) and to_spec(again) == spec
        assert describe(again) == describe(layer)


@pytest.mark.parametrize("spec, words", [
    ({"kind": "pool"}, "unknown kind 'pool'"),
    ({"kind": "softmax", "n_in": 3}, "has the keys"),
    ({"kind": "softmax", "n_in": 3, "n_out": -1, "p_dropout": 0}, "n_out must be"),
    ([1, 2], "unknown kind 'list'"),
])
def test_bad_specs_are_refused(spec, words):
    with pytest.raises(ConfigError, match=words):
        from_spec(spec)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_give_the_same_network(tmp_path, dtype):
    net = fastbp.Network(layers(), device="cpu", dtype=dtype, seed=2)
    X, labels = data()
    net.train(X, labels, epochs=1, batch_size=5, eta=0.1, momentum=0.5)
    path = net.save(tmp_path / "net.npz", extra={"note": "conv"})
    loaded = fastbp.load(path, device="cpu")
    assert type(loaded) is fastbp.LayerNetwork and repr(loaded) == repr(net)
    for got, want in zip(loaded.weights + loaded.biases + list(loaded.velocities),
                         net.weights + net.biases + list(net.velocities), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert loaded.history == net.history
    meta = json.loads(np.load(path)["metadata"].tobytes())
    assert meta["format_version"] == 4 and [s["kind"] for s in meta["layers"]] == [
        "conv-pool", "fully-connected", "softmax"]


def test_a_fully_connected_network_is_still_written_as_version_3(tmp_path):
    path = fastbp.Network([4, 3, 2], device="cpu").save(tmp_path / "n.npz")
    meta = json.loads(np.load(path)["metadata"].tobytes())
    assert meta["format_version"] == 3 and "layers" not in meta


def test_training_resumes_as_if_never_stopped(tmp_path):
    """Two epochs, a save and a load, two more: the same parameters as four epochs straight
    (shuffled order, dropout masks and momentum all continue from the file)."""
    X, labels = data()
    options = dict(batch_size=4, eta=0.1, momentum=0.6, lmbda=0.2)
    straight = fastbp.Network(layers(), device="cpu", dtype="float64", seed=7)
    straight.train(X, labels, epochs=4, **options)
    first = fastbp.Network(layers(), device="cpu", dtype="float64", seed=7)
    first.train(X, labels, epochs=2, **options)
    resumed = fastbp.load(first.save(tmp_path / "half.npz"), device="cpu")
    resumed.train(X, labels, epochs=2, **options)
    for got, want in zip(resumed.weights + resumed.biases, straight.weights + straight.biases):
        np.testing.assert_array_equal(got, want)
    assert [r.epoch for r in resumed.history] == [0, 1, 2, 3]


def rewrite(path, out, **changes):
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    meta = json.loads(np.load(path)["metadata"].tobytes())
    meta.update(changes)
    with zipfile.ZipFile(out, "w") as z:
        for name, raw in members.items():
            if name != "metadata.npy":
                z.writestr(name, raw)
    with zipfile.ZipFile(out, "a") as z, z.open("metadata.npy", "w") as f:
        np.save(f, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return out


def test_a_damaged_layer_stack_is_refused(tmp_path):
    net = fastbp.Network(layers(), device="cpu", seed=2)
    path = net.save(tmp_path / "net.npz")
    specs = [to_spec(layer) for layer in net.layers]
    bad = [dict(specs[0], filter_shape=[4, 1, 3, 3]), *specs[1:]]
    with pytest.raises(ModelFormatError, match="the layer specs give sizes"):
        fastbp.load(rewrite(path, tmp_path / "a.npz", layers=bad))
    with pytest.raises(ModelFormatError, match="invalid layer spec"):
        fastbp.load(rewrite(path, tmp_path / "b.npz", layers=[{"kind": "x"}, *specs[1:]]))
    with pytest.raises(ModelFormatError, match="layers must list 3"):
        fastbp.load(rewrite(path, tmp_path / "c.npz", layers=specs[:2]))
    wide = [dict(specs[0], filter_shape=[3, 1, 2, 2], image_shape=[1, 6, 6]), *specs[1:]]
    with pytest.raises(ModelFormatError):
        fastbp.load(rewrite(path, tmp_path / "d.npz", layers=wide))


def test_the_books_json_refuses_a_layer_network(tmp_path):
    net = fastbp.Network(layers(), device="cpu")
    with pytest.raises(ConfigError, match="format='fastbp'"):
        net.save(tmp_path / "net.json", format="network2")
    assert not (tmp_path / "net.json").exists()
