"""``benchmarks/speed_conv.py``: its fastbp contender trains the book's two-conv net, and its
flop count is the sum of the net's products (forward, weight gradients, errors below)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speed_conv():
    spec = importlib.util.spec_from_file_location("speed_conv",
                                                  ROOT / "benchmarks" / "speed_conv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_are_the_products_of_the_net(speed_conv):
    """Forward: conv1 20·25 per output pixel of 24², conv2 40·500 of 8², FC 640·100, softmax
    100·10; training adds the weight gradients (same) and the errors below (all but conv1)."""
    conv1, conv2, fc, soft = 20 * 25 * 24 * 24, 40 * 500 * 8 * 8, 640 * 100, 100 * 10
    assert speed_conv.train_flops() == 2 * (3 * (conv1 + conv2 + fc + soft) - conv1)


def test_the_fastbp_contender_trains(speed_conv):
    """A few steps on the ``cpu`` device report a positive rate."""
    got = speed_conv.worker("cpu", 5, 25, 1)
    assert got["samples_per_s"] > 0
