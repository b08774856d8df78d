"""``fastbp train --net NAME`` and ``--layers SPEC``: layer networks on the command line, saved
and evaluated; the spec's grammar and its refusals."""

from __future__ import annotations

import pytest

import fastbp
from fastbp import cli
from fastbp.cli.layers import NETS, parse_layers
from fastbp.errors import ConfigError
from fastbp.layers import ConvPool, FullyConnected, Softmax


def test_the_books_chapter6_networks():
    conv2 = parse_layers(NETS["chapter6-conv2"])
    assert [type(la) for la in conv2] == [ConvPool, ConvPool, FullyConnected, Softmax]
    assert [la.out_shape for la in conv2] == [(20, 12, 12), (40, 4, 4), (100,), (10,)]
    assert conv2[1].filter_shape == (40, 20, 5, 5) and conv2[2].n_in == 640
    assert {la.activation for la in conv2[:-1]} == {"relu"}
    conv1 = parse_layers(NETS["chapter6-conv1"])
    assert conv1[1].n_in == 20 * 12 * 12 and conv1[0].activation == "sigmoid"
    fc = parse_layers(NETS["chapter6-fc"])
    assert (fc[0].n_in, fc[0].n_out, fc[1].n_out) == (784, 100, 10)


def test_neurons_pools_and_dropout_in_a_spec():
    layers = parse_layers("conv6x3x3/3x2:tanh,fc40:linear:0.5,softmax10:0.25")
    assert layers[0].poolsize == (3, 2) and layers[0].out_shape == (6, 8, 13)
    assert (layers[1].activation, layers[1].p_dropout, layers[2].p_dropout) == \
        ("linear", 0.5, 0.25)


@pytest.mark.parametrize("spec, words", [
    ("", "comma-separated stack"),
    ("fc30,,softmax10", "comma-separated stack"),
    ("conv20x5x5:relu,softmax10", "none of convFxKHxKW/P"),
    ("fc30,conv4x3x3/2,softmax10", "a conv layer follows the image"),
    ("softmax10,fc30", "is the last layer"),
    ("fc30:swish,softmax10", "unknown activation 'swish'"),
    ("fc30:relu:lots,softmax10", "must be a number"),
    ("fc30:relu:1.5,softmax10", "p_dropout must be in"),
    ("conv4x29x29/2,softmax10", "do not fit images 28x28"),
])
def test_bad_specs_are_refused_by_name(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_layers(spec)


def test_train_a_named_net_then_evaluate_it(data_dir, tmp_path, capsys):
    path = tmp_path / "fc.npz"
    rc = cli.main(["train", "--net", "chapter6-fc", "--limit", "300", "--epochs", "1",
                   "--seed", "1", "--save", str(path), "--quiet", "--device", "cpu"])
    assert rc == 0
    net = fastbp.load(path)
    assert isinstance(net, fastbp.LayerNetwork) and len(net.history) == 1
    assert [la.out_shape for la in net.layers] == [(100,), (10,)]
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Network([FullyConnected(784, 100, 'sigmoid', 0.0)" in out and "accuracy" in out
    assert f"{net.history[0].correct:,} / 10,000 correct" in out


def test_train_a_conv_spec_and_resume_it(data_dir, tmp_path, capsys):
    path = tmp_path / "conv.npz"
    argv = ["train", "--layers", "conv2x5x5/2:relu,fc10:relu:0.2,softmax10", "--limit", "60",
            "--batch-size", "6", "--seed", "3", "--save", str(path), "--device", "cpu"]
    assert cli.main([*argv, "--epochs", "1"]) == 0
    assert "ConvPool((2, 1, 5, 5), (1, 28, 28), (2, 2), 'relu')" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(path), "--epochs", "2", "--device", "cpu"]) == 0
    resumed = fastbp.load(path)
    straight = tmp_path / "straight.npz"
    argv[argv.index(str(path))] = str(straight)
    assert cli.main([*argv, "--epochs", "2"]) == 0
    again = fastbp.load(straight)
    assert len(resumed.history) == 2
    for got, want in zip(resumed.weights + resumed.biases, again.weights + again.biases):
        assert (got == want).all()
    assert resumed.history[-1].correct == again.history[-1].correct


@pytest.mark.parametrize("extra, says", [
    (["--net", "chapter6-conv2", "--sizes", "784,30,10"], "--sizes describe a --sizes network"),
    (["--net", "chapter6-conv2", "--dropout", "0.5"], "give fc and softmax layers their own"),
    (["--net", "chapter6-conv2", "--layers", "fc10,softmax10"], "not both"),
    (["--net", "chapter7"], "is not one of chapter6-fc"),
    (["--layers", "fc10"], "ends in fastbp.layers.Softmax"),
])
def test_conflicting_options_are_refused_before_any_data_is_read(extra, says, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr("fastbp.cli.train.load_data",
                        lambda *a: pytest.fail("the data were read"))
    assert cli.main(["train", "--epochs", "1", *extra]) != 0
    assert says in capsys.readouterr().err


def test_the_help_shows_both_forms(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--net NAME" in out and "--layers SPEC" in out
    text = "".join(out.split())  # help wraps long words anywhere
    assert "chapter6-conv2=conv20x5x5/2:relu,conv40x5x5/2:relu,fc100:relu,softmax10" in text
    assert "conv20x5x5/2:relu,conv40x5x5/2:relu,fc100:relu,softmax10—convFxKHxKW/P" in text
