"""cpu-jit's fingerprint of host arrays (fastbp_numba.fingerprint), with which train keeps its
data's sample-major copy between calls."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import NumbaBackend  # noqa: E402
from fastbp_numba.fingerprint import fingerprint  # noqa: E402

from fastbp.model import inputs, kept  # noqa: E402


@pytest.mark.parametrize("n", [0, 1, 7, 8, 33, 1001])  # words in four lanes, and a byte tail
def test_every_single_byte_change_changes_the_fingerprint(n):
    a = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    seen = {fingerprint(a)}
    for i in range(n):
        b = a.copy()
        b[i] ^= 1 << (i % 8)
        seen.add(fingerprint(b))
    assert len(seen) == n + 1


def test_order_and_memory_layout():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a[::-1].copy())  # the same values, moved
    assert fingerprint(np.asfortranarray(a)) == fingerprint(np.ascontiguousarray(a.T))  # bytes


def test_the_device_fingerprints_contiguous_numpy_arrays_only():
    be = NumbaBackend()
    a = np.ones((30, 40), np.float32)
    assert be.fingerprint(a) == fingerprint(a)
    assert be.fingerprint(a[:, ::2]) is None
    assert be.fingerprint([1.0, 2.0]) is None


def test_train_calls_share_one_copy_of_unchanged_data():
    kept.forget_all()
    be = NumbaBackend()
    X = np.random.default_rng(1).random((784, 2048), dtype=np.float32)
    first = inputs.samples_major(be, X)
    assert inputs.samples_major(be, X) is first
    X[5, 5] += 1.0
    again = inputs.samples_major(be, X)
    assert again is not first
    np.testing.assert_array_equal(again, X.T)
    kept.forget_all()
