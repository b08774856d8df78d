"""The ``fastbp`` command line: ``fastbp train`` and its errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import mnist_dir

import fastbp
from fastbp import cli
from fastbp.datasets import load_mnist
from fastbp.model.persist import load_checkpoint


@pytest.fixture
def data_dir():
    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    return str(d)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No MNIST anywhere and no network: the loader must fail, not download."""
    pooch = pytest.importorskip("pooch")

    def offline(url, *args, **kwargs):
        raise ConnectionError("network is unreachable (test)")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "empty"


def test_train_one_epoch(data_dir, capsys):
    rc = cli.main(["train", "--epochs", "1", "--sizes", "784,30,10", "--limit", "5000",
                   "--seed", "1", "--data", data_dir])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Network([784, 30, 10]" in out and "on 5,000 MNIST training images" in out
    epoch = re.search(r"^Epoch 0: test (\d+) / 10000 \(([\d.]+) %\), cost [\d.]+, [\d.]+ s, "
                      r"[\d,]+ samples/s$", out, re.M)
    assert epoch, out
    assert int(epoch[1]) > 5000  # well above chance (1000) after one epoch on 5,000 images
    assert f"best test accuracy {epoch[2]} %" in out


@pytest.mark.parametrize("cost,init", [("quadratic", "scaled"), ("cross-entropy", "standard")])
def test_every_training_option_reaches_the_saved_model(data_dir, tmp_path, monkeypatch, capsys,
                                                       cost, init):
    """Each option of ``fastbp train`` changes what it saves: the saved network is, to the bit,
    the one the Python API trains with the same options, and the file's metadata holds them.
    (Each --init is the one its cost does not default to; $FASTBP_DEVICE names another device
    where one is installed, so --device must win over it.)"""
    other = [d for d in ("cpu-jit", "array-api") if d in fastbp.backend_names()][:1]
    for device in other:
        monkeypatch.setenv("FASTBP_DEVICE", device)
    path = tmp_path / "model.npz"
    rc = cli.main(["train", "--sizes", "784,12,10", "--epochs", "2", "--batch-size", "20",
                   "--eta", "0.7", "--lmbda", "3.0", "--cost", cost, "--init", init,
                   "--seed", "5", "--limit", "200", "--dtype", "float64", "--device", "cpu",
                   "--data", data_dir, "--save", str(path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "device='cpu'" in out and out.count("Epoch ") == 2, out
    saved = load_checkpoint(path, device="cpu")
    net = saved.network
    assert (net.sizes, net.cost.name, net.init, net.dtype, len(net.history)) == (
        [784, 12, 10], cost, init, "float64", 2)
    options = {"epochs": 2, "batch_size": 20, "eta": 0.7, "lmbda": 3.0, "limit": 200, "seed": 5}
    assert {key: saved.extra["train"][key] for key in options} == options

    data = load_mnist(data_dir)
    same = fastbp.Network([784, 12, 10], cost=cost, init=init, dtype="float64", seed=5,
                          device="cpu")
    same.train(data.train.X[:, :200], data.train.labels[:200], epochs=2, batch_size=20,
               eta=0.7, lmbda=3.0, test=(data.test.X, data.test.labels))
    for got, want in zip([*net.weights, *net.biases], [*same.weights, *same.biases]):
        np.testing.assert_array_equal(got, want)
    assert [r.correct for r in net.history] == [r.correct for r in same.history]


def test_train_help_via_python_m():
    proc = subprocess.run([sys.executable, "-m", "fastbp", "train", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--sizes", "--epochs", "--batch-size", "--eta", "--cost", "--seed",
                   "--device", "--limit"):
        assert option in proc.stdout


def test_bad_device_is_a_clear_error_before_any_data_is_read(nowhere, capsys):
    rc = cli.main(["train", "--device", "gpu", "--data", str(nowhere)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "fastbp: error: malformed device string 'gpu'" in err and "cuda" in err
    assert "MNIST" not in err and "Traceback" not in err


def test_bad_device_via_python_m(tmp_path):
    env = dict(os.environ, FASTBP_DATA=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "fastbp", "train", "--device", "gpu"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert "malformed device string 'gpu'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_mnist_says_how_to_fix(nowhere, capsys):
    rc = cli.main(["train", "--epochs", "1"])  # no --data: the search order, then the fix
    err = capsys.readouterr().err
    assert rc == 2
    assert "MNIST not found; looked in" in err and str(nowhere.parent / "cache") in err
    assert "--data DIR" in err and "FASTBP_DATA" in err
    rc = cli.main(["train", "--epochs", "1", "--data", str(nowhere)])  # used as given
    err = capsys.readouterr().err
    assert rc == 2 and f"{nowhere}: no such folder" in err and "looked in" not in err


@pytest.mark.parametrize("args, says", [
    (["--limit", "0"], "--limit must be between 1 and 50000, got 0"),
    (["--limit", "20", "--batch-size", "30"], "batch_size must be between 1 and 20, got 30"),
    (["--eta", "0"], "eta must be > 0"),
    (["--epochs", "-1"], "epochs must be >= 0"),
])
def test_bad_training_options(data_dir, capsys, args, says):
    rc = cli.main(["train", "--data", data_dir, *args])
    assert rc == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (["train", "--sizes", "784,x,10"], "sizes must look like 784,30,10"),
    (["train", "--cost", "hinge"], "invalid choice: 'hinge'"),
    ([], "required"),
])
def test_malformed_command_lines(args, says, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    assert says in capsys.readouterr().err


def test_bad_sizes_value(nowhere, capsys):
    rc = cli.main(["train", "--sizes", "784", "--data", str(nowhere)])
    assert rc == 2
    assert "at least 2 layers" in capsys.readouterr().err


@pytest.mark.parametrize("argv,want", [
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--eta", "-3"], "eta must be > 0"),
    (["--momentum", "1.5"], "momentum must be in [0, 1)"),
    (["--dropout", "1"], "dropout must be a probability in [0, 1)"),
])
def test_bad_step_values_are_refused_before_any_data_is_read(argv, want, monkeypatch, capsys,
                                                             tmp_path):
    """A bad value is refused before MNIST is read (here: a data folder that does not exist)."""
    from fastbp.cli import main as cli_main

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the options were checked")

    monkeypatch.setattr("fastbp.cli.train.load_data", no_data)
    assert cli_main(["train", "--epochs", "1", *argv]) == 2
    assert want in capsys.readouterr().err
