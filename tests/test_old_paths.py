"""Every old module path still imports, from one table (:mod:`fastbp.aliases`), and gives the
very objects of the modules that now hold them; an unknown path is still not found."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import fastbp
from fastbp import aliases


@pytest.mark.parametrize("old,new", sorted(aliases.MOVED.items()))
def test_a_moved_module_is_the_same_module_under_both_names(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)
    assert getattr(fastbp, old.rsplit(".", 1)[1]) is importlib.import_module(new)


@pytest.mark.parametrize("old", sorted(aliases.GATHERED))
def test_a_gathered_module_offers_every_old_name_as_the_same_object(old: str) -> None:
    module = importlib.import_module(old)
    names = aliases.GATHERED[old][1]
    assert sorted(module.__all__) == sorted(names) and module.__doc__
    for name, where in names.items():
        assert getattr(module, name) is getattr(importlib.import_module(where), name), name
    assert importlib.import_module(old) is module  # built once


def test_the_books_imports() -> None:
    import fastbp.network as network
    import fastbp.network3 as network3
    from fastbp.mnist_loader import load_data_wrapper
    from fastbp.network import CrossEntropyCost, Network, QuadraticCost, sigmoid, sigmoid_prime

    assert network.Network is Network is fastbp.Network
    assert (QuadraticCost, CrossEntropyCost) == (fastbp.QuadraticCost, fastbp.CrossEntropyCost)
    assert sigmoid is fastbp.sigmoid and sigmoid_prime is fastbp.sigmoid_prime
    assert callable(load_data_wrapper)
    from fastbp.model import network3 as model_network3

    assert network3 is model_network3
    for name in ("ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "Network", "ReLU",
                 "linear", "sigmoid", "tanh", "load_data_shared", "size"):
        assert hasattr(network3, name), name
    from fastbp.backend import Backend, NumpyBackend
    from fastbp.datasets import load_mnist

    assert NumpyBackend is fastbp.NumpyBackend and Backend is fastbp.Backend
    assert load_mnist is fastbp.datasets.load_mnist


@pytest.mark.parametrize("name", ["fastbp.nosuch", "fastbp.network.nosuch", "fastbp.networks"])
def test_an_unknown_path_is_still_not_found(name: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(name)
    with pytest.raises(AttributeError):
        fastbp.nosuch  # noqa: B018


def test_the_table_imports_nothing_until_an_old_path_is_imported() -> None:
    """``import fastbp`` installs the finder and stays light; one old path imports its module."""
    code = ("import sys, fastbp; assert 'numpy' not in sys.modules, 'numpy'; "
            "assert not any(m.startswith('fastbp.model') for m in sys.modules); "
            "import fastbp.plots; assert 'fastbp.io.plots' in sys.modules; "
            "assert sys.modules['fastbp.plots'] is sys.modules['fastbp.io.plots']")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_installing_twice_keeps_one_finder() -> None:
    aliases.install()
    aliases.install()
    assert sum(type(f).__name__ == "AliasFinder" for f in sys.meta_path) == 1
