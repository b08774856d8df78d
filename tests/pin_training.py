"""The "same results" pin: four trainings whose parameters were recorded before the layer
redesign (``tests/data/pin_training.json``); ``test_layers_pin.py`` checks today's code gives
them again to 1e-12.

Each network trains 2 epochs in float64 on ``cpu`` over 600 synthetic samples (a seeded
``default_rng``: the same on every machine). Recording every parameter would be megabytes, so
each array is pinned by ``PROBES`` entries at fixed places plus two sums over all of them:
``Σ W`` and ``Σ r ⊙ W`` with ``r`` fixed random weights in [0, 1) (a change anywhere moves it).
Run ``python tests/pin_training.py`` to print the record (only when a change of results is
intended, and say so).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

import fastbp

PROBES = 64
CASES: dict[str, dict[str, Any]] = {
    "784-30-10 sigmoid quadratic": {
        "sizes": [784, 30, 10], "net": {}, "train": {"eta": 1.0}},
    "784-100-10 sigmoid quadratic": {
        "sizes": [784, 100, 10], "net": {}, "train": {"eta": 1.0}},
    "784-30-10 relu log-likelihood momentum dropout": {
        "sizes": [784, 30, 10], "net": {"activation": "relu", "cost": "log-likelihood"},
        "train": {"eta": 0.05, "momentum": 0.9, "dropout": 0.2}},
    "784-100-10 relu log-likelihood momentum dropout": {
        "sizes": [784, 100, 10], "net": {"activation": "relu", "cost": "log-likelihood"},
        "train": {"eta": 0.05, "momentum": 0.9, "dropout": 0.2}},
}


def data(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of 784 inputs, a fifth of them in [0, 1) and the rest 0 (sparse, as MNIST's
    pixels), labelled by a fixed random linear map. The trainings are chosen calm: a change of
    one unit in the last place of the initial weights moves the final ones by under 1e-14, so
    another BLAS's summation order stays far inside the pin's 1e-12."""
    rng = np.random.default_rng(20261207)
    x = rng.random((784, n)) * (rng.random((784, n)) < 0.2)
    labels = (rng.standard_normal((10, 784)) @ x).argmax(axis=0)
    return x, labels


def summary(arrays: list[np.ndarray]) -> list[dict[str, Any]]:
    """Per array: its shape, the entries at ``PROBES`` fixed places, ``Σ W`` and ``Σ r ⊙ W``."""
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a, dtype=np.float64)
        rng = np.random.default_rng(1000 + i)
        flat = a.ravel()
        where = rng.choice(flat.size, size=min(PROBES, flat.size), replace=False)
        r = rng.random(flat.size)
        out.append({"shape": list(a.shape), "where": where.tolist(),
                    "values": flat[where].tolist(), "sum": float(flat.sum()),
                    "weighted": float(r @ flat)})
    return out


def run(case: dict[str, Any]) -> dict[str, Any]:
    """Initial and final parameters (``W``s then ``b``s) of one case, summarised."""
    x, labels = data()
    net = fastbp.Network(case["sizes"], device="cpu", dtype="float64", seed=7, **case["net"])
    initial = summary([*net.weights, *net.biases])
    net.train(x, labels, epochs=2, batch_size=10, **case["train"])
    return {"initial": initial, "final": summary([*net.weights, *net.biases])}


if __name__ == "__main__":
    json.dump({name: run(case) for name, case in CASES.items()}, sys.stdout, indent=1)
