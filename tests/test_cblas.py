"""Direct CBLAS calls (fastbp.devices.cpu.cblas): the choice of library, and GEMMs and epochs
that agree with NumPy and with the per-sample oracle on every library present."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.core import reference
from fastbp.devices.cpu import blas_threads, cblas
from fastbp.devices.cpu import epoch as numpy_epoch

LIBRARIES = ["mkl", "openblas", "scipy"]


@pytest.fixture(params=LIBRARIES)
def library(request, monkeypatch):
    """Each BLAS fastbp can call, chosen through $FASTBP_BLAS; skipped where not installed."""
    if request.param != "scipy" and cblas._load(request.param) is None:
        pytest.skip(f"{request.param} is not installed here")
    monkeypatch.setenv(cblas.ENV_VAR, request.param)
    return request.param


def test_default_is_auto(monkeypatch):
    monkeypatch.delenv(cblas.ENV_VAR, raising=False)
    assert cblas.choice() == "auto"
    lib = cblas.find()
    if cblas._load("mkl") is not None:
        assert lib.name == "mkl"  # MKL first when installed
    elif lib is not None:
        assert lib.name == "openblas"


def test_a_bad_choice_names_the_value_and_the_choices(monkeypatch):
    monkeypatch.setenv(cblas.ENV_VAR, "atlas")
    with pytest.raises(fastbp.FastbpError, match="'atlas'.*auto, mkl, openblas, scipy"):
        cblas.find()


def test_scipy_means_no_direct_calls(monkeypatch):
    monkeypatch.setenv(cblas.ENV_VAR, "scipy")
    assert cblas.find() is None
    assert "SciPy" in cblas.description() or "openblas" in cblas.description().lower()


def test_a_library_asked_for_by_name_must_exist(monkeypatch):
    monkeypatch.setenv(cblas.ENV_VAR, "mkl")
    monkeypatch.setattr(cblas, "_candidates", lambda name: [])
    cblas._load.cache_clear()
    try:
        with pytest.raises(fastbp.MissingDependency, match="no mkl library found.*pip install mkl"):
            cblas.find()
    finally:
        cblas._load.cache_clear()


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float64", 1e-12)])
@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_matches_numpy(library, dtype, tol, trans_a, trans_b, rng):
    """The GEMM the cpu epoch calls for each choice, ``C ← α op(A) op(B) + β C`` written into
    ``C`` itself: a direct CBLAS call, or (``scipy``) SciPy's wrapper with ``overwrite_c``."""
    from scipy.linalg import blas

    lib = cblas.find()
    if lib is None:  # the epoch's calls when no library is called directly
        gemm = getattr(blas, {"float32": "sgemm", "float64": "dgemm"}[dtype])
    else:
        gemm = cblas.FortranGemm(lib, dtype)
    m, n, k = 7, 5, 11
    a = np.asfortranarray(rng.random((k, m) if trans_a else (m, k)).astype(dtype))
    b = np.asfortranarray(rng.random((n, k) if trans_b else (k, n)).astype(dtype))
    c = np.asfortranarray(rng.random((m, n)).astype(dtype))
    want = 0.5 * (a.T if trans_a else a) @ (b.T if trans_b else b) - 2.0 * c
    got = gemm(0.5, a, b, -2.0, c, trans_a, trans_b, 1)
    assert got is c
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("cost", [fastbp.QuadraticCost, fastbp.CrossEntropyCost])
def test_cpu_epoch_on_each_library_matches_the_oracle(library, cost, monkeypatch, rng):
    monkeypatch.setattr(numpy_epoch, "DIRECT_WORK", 0)  # every step calls the library
    sizes = [20, 8, 6, 5]
    X = rng.random((20, 50))
    Y = np.eye(5)[:, rng.integers(0, 5, 50)]
    net = fastbp.Network(sizes, cost=cost, dtype="float64", seed=5)
    W, B = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    net.train(X, Y, epochs=1, batch_size=7, eta=0.5, shuffle=False)
    reference.sgd_epoch(W, B, X, Y, batch_size=7, eta=0.5, cost=cost)
    for got, want in zip(list(net.weights) + list(net.biases), W + B):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_the_threaded_threshold_follows_the_library(monkeypatch):
    monkeypatch.delenv(blas_threads.ENV_VAR, raising=False)
    monkeypatch.setenv(cblas.ENV_VAR, "scipy")
    assert blas_threads.threaded_work() == blas_threads.THREADED_WORK
    if cblas._load("mkl") is not None:
        monkeypatch.setenv(cblas.ENV_VAR, "mkl")
        assert blas_threads.threaded_work() == blas_threads.THREADED_WORK_MKL


def test_devices_say_which_library_runs_the_gemms(library):
    info = fastbp.Network([4, 3, 2]).backend.describe()
    name = {"mkl": "mkl", "openblas": "openblas", "scipy": "openblas"}[library]
    assert name in info["gemm"].lower() or "SciPy" in info["gemm"]


def test_a_column_block_keeps_its_leading_dimension(rng):
    lib = cblas.find()
    if lib is None:
        pytest.skip("no CBLAS to call directly here")
    big = np.asfortranarray(rng.random((9, 6)))
    b = np.asfortranarray(rng.random((6, 3)))
    c = np.asfortranarray(np.zeros((4, 3)))
    cblas.FortranGemm(lib, "float64")(1.0, big[2:6], b, 0.0, c)  # rows 2:6: ld stays 9
    np.testing.assert_allclose(c, big[2:6] @ b, atol=1e-12)
    with pytest.raises(ValueError, match="column-major"):
        cblas.FortranGemm(lib, "float64")(1.0, np.ones((3, 4))[:, ::2], b[:2], 0.0, c[:3])
