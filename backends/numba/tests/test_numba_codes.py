"""What cpu-jit's own epoch takes: networks whose cost and neurons its kernels compile. Any other
runs the ``cpu`` device's loop on the neuron table's forms, with the same results, and says so
once."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import codes  # noqa: E402
from fastbp_numba import kernels as jit_kernels  # noqa: E402

import fastbp  # noqa: E402
from fastbp.core.costs import LogLikelihoodCost, QuadraticCost  # noqa: E402


def test_a_spec_names_each_layers_code_or_nothing():
    code, kinds = codes.spec(jit_kernels, LogLikelihoodCost, ("tanh", "softmax"), 2)
    assert code == jit_kernels.LOG_LIKELIHOOD
    assert list(kinds) == [jit_kernels.KIND_CODES["tanh"], jit_kernels.KIND_CODES["softmax"]]
    assert codes.spec(jit_kernels, object, ("sigmoid", "sigmoid"), 2) is None
    assert codes.spec(jit_kernels, QuadraticCost, ("linear", "sigmoid"), 2) is None
    assert codes.not_compiled(jit_kernels, QuadraticCost, ("linear", "sigmoid")) == \
        "the neuron 'linear'"


def test_a_neuron_without_a_kernel_runs_the_cpu_loop_with_the_same_results(monkeypatch, caplog):
    X = np.random.default_rng(3).random((12, 40))
    labels = np.arange(40) % 4

    def trained(device):
        net = fastbp.Network([12, 7, 4], activation="tanh", cost="log-likelihood",
                             device=device, dtype="float64", seed=5)
        net.train(X, labels, epochs=2, batch_size=6, eta=0.1)
        return [np.asarray(w) for w in net.weights]

    want = trained("cpu")
    # a kernel registry without tanh: cpu-jit's own epoch must decline, not fail
    monkeypatch.setattr(jit_kernels, "KIND_CODES",
                        {k: v for k, v in jit_kernels.KIND_CODES.items() if k != "tanh"})
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        got = trained("cpu-jit")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert sum("the neuron 'tanh' runs the cpu device's loop" in r.message
               for r in caplog.records) == 1
