"""Training data's sample-major copy kept between train calls (fastbp.model.kept): used again
only for the same, unchanged array; made again after any change; gone with its array."""

from __future__ import annotations

import gc
import hashlib

import numpy as np
import pytest

import fastbp
from fastbp.model import inputs, kept

N = 2048  # 784 × 2048 float32: 6.4 MB, above kept.KEEP_BYTES


class Fingerprints(fastbp.NumpyBackend):
    """The cpu device with a (slow, exact) fingerprint: the kept copies' rules without Numba."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.copies = 0

    def fingerprint(self, a):
        if not isinstance(a, np.ndarray) or not (a.flags.c_contiguous or a.flags.f_contiguous):
            return None
        return int.from_bytes(hashlib.blake2b(a.reshape(-1, order="A").view(np.uint8),
                                              digest_size=8).digest(), "little")

    def contiguous(self, a):
        out = super().contiguous(a)
        self.copies += out is not a and out.shape == (N, 784)  # a copy of the samples
        return out


@pytest.fixture(autouse=True)
def empty():
    kept.forget_all()
    yield
    kept.forget_all()


@pytest.fixture
def X():
    return np.random.default_rng(3).random((784, N), dtype=np.float32)


def test_the_same_unchanged_array_gets_the_same_copy(X):
    be = Fingerprints(dtype="float32")
    first = inputs.samples_major(be, X)
    again = inputs.samples_major(be, X)
    assert again is first and be.copies == 1
    np.testing.assert_array_equal(first, X.T)


@pytest.mark.parametrize("change", ["one ulp", "swap two samples", "new values"])
def test_a_change_in_place_makes_a_new_copy(X, change):
    be = Fingerprints(dtype="float32")
    first = inputs.samples_major(be, X)
    if change == "one ulp":
        X[100, 7] = np.nextafter(X[100, 7], np.float32(2))
    elif change == "swap two samples":
        X[:, [0, 1]] = X[:, [1, 0]]
    else:
        X[...] = 0.5
    again = inputs.samples_major(be, X)
    assert again is not first and be.copies == 2
    np.testing.assert_array_equal(again, X.T)


def test_another_array_with_the_same_values_is_copied_again(X):
    be = Fingerprints(dtype="float32")
    inputs.samples_major(be, X)
    inputs.samples_major(be, X.copy())
    assert be.copies == 2


def test_the_copy_goes_with_its_array():
    be = Fingerprints(dtype="float32")
    X = np.ones((784, N), np.float32)
    inputs.samples_major(be, X)
    assert len(kept._kept) == 1
    del X
    gc.collect()
    assert not kept._kept


def test_small_arrays_and_devices_without_a_fingerprint_copy_every_time(X):
    plain = fastbp.NumpyBackend(dtype="float32")
    assert inputs.samples_major(plain, X) is not inputs.samples_major(plain, X)
    small = np.ones((784, 10), np.float32)
    be = Fingerprints(dtype="float32")
    assert inputs.samples_major(be, small) is not inputs.samples_major(be, small)
    assert not kept._kept


def test_training_twice_on_kept_data_equals_training_on_fresh_copies(X):
    """Training never writes into the kept copy: two calls on one array give what two calls
    on two fresh arrays give, with the copy kept in the first case only."""
    y = np.random.default_rng(4).integers(0, 10, N)
    runs = []
    for fresh in (False, True):
        be = Fingerprints(dtype="float32")
        net = fastbp.Network([784, 20, 10], device=be, seed=2)
        for _ in range(2):
            net.train(X.copy() if fresh else X, y, epochs=1, batch_size=32, eta=0.5,
                      momentum=0.5, dropout=0.2)
        runs.append([np.array(w) for w in net.weights])
        assert be.copies == (2 if fresh else 1)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
