"""Bad input: each gets a ``fastbp.FastbpError`` subclass whose message names the problem."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest
from idxfiles import idx_bytes, write_idx

import fastbp
from fastbp import ConfigError, DataError, DeviceError, FastbpError, ShapeError
from fastbp.data.idx import parse_idx, read_idx

SIZES = [4, 3, 2]
N = 6


@pytest.fixture
def net():
    return fastbp.Network(SIZES, seed=0)


@pytest.fixture
def data(rng):
    X = rng.random((SIZES[0], N))
    labels = np.array([0, 1, 0, 1, 0, 1])
    return X, labels


def train(net, X, Y, **kw):
    args = dict(epochs=1, batch_size=2, eta=1.0)
    args.update(kw)
    return net.train(X, Y, **args)


def test_every_error_is_a_fastbp_error():
    for cls in (ConfigError, DataError, DeviceError, ShapeError, fastbp.TrainingDiverged,
                fastbp.ModelFormatError):
        assert issubclass(cls, FastbpError)


# -- X with the wrong number of rows ---------------------------------------------------------
@pytest.mark.parametrize("call", ["train", "feedforward", "backprop", "accuracy"])
def test_x_with_wrong_rows(net, data, call):
    X = np.zeros((5, N))
    Y = np.eye(2)[:, data[1]]
    calls = {
        "train": lambda: train(net, X, data[1]),
        "feedforward": lambda: net.feedforward(X),
        "backprop": lambda: net.backprop(X, Y),
        "accuracy": lambda: net.accuracy(X, data[1]),
    }
    with pytest.raises(ShapeError, match=r"shape \(5, 6\); expected \(4, m\)"):
        calls[call]()


def test_x_transposed_says_how_to_fix(net, data):
    with pytest.raises(ShapeError, match=r"shape \(6, 4\).*X\.T"):
        train(net, data[0].T, data[1])


def test_x_one_dimensional(net):
    with pytest.raises(ShapeError, match=r"shape \(4,\); expected \(4, m\)"):
        net.feedforward(np.zeros(4))


def test_x_without_samples(net):
    with pytest.raises(ShapeError, match="no samples"):
        net.feedforward(np.zeros((4, 0)))


def test_x_not_numbers(net):
    with pytest.raises(ShapeError, match="real numbers"):
        net.feedforward([["a", "b"]] * 4)


def test_test_set_x_with_wrong_rows(net, data):
    with pytest.raises(ShapeError, match=r"test X has shape \(3, 6\)"):
        train(net, *data, test=(np.zeros((3, N)), data[1]))


# -- Y not matching X --------------------------------------------------------------------------
def test_one_hot_y_with_too_few_columns(net, data):
    Y = np.eye(2)[:, data[1][:5]]
    with pytest.raises(ShapeError, match=r"Y has shape \(2, 5\).*\(6,\).*\(2, 6\) one-hot"):
        train(net, data[0], Y)


def test_labels_of_the_wrong_length(net, data):
    with pytest.raises(ShapeError, match=r"Y has shape \(5,\); expected \(6,\) integer labels"):
        train(net, data[0], data[1][:5])


def test_backprop_y_not_matching_x(net, data):
    with pytest.raises(ShapeError, match=r"y has shape \(2, 5\); expected \(2, 6\) to match X"):
        net.backprop(data[0], np.zeros((2, 5)))


def test_test_labels_not_matching_test_x(net, data):
    with pytest.raises(ShapeError, match=r"test labels has shape \(4,\)"):
        train(net, *data, test=(data[0], data[1][:4]))


def test_book_pairs_of_different_shapes(net):
    pairs = [(np.zeros((4, 1)), np.zeros((2, 1))), (np.zeros((5, 1)), np.zeros((2, 1)))]
    with pytest.raises(ShapeError, match="same shapes"):
        net.update_mini_batch(pairs, 1.0)


def test_book_data_empty_or_not_pairs(net):
    with pytest.raises(ShapeError, match="training_data is empty"):
        net.SGD([], 1, 1, 1.0)
    with pytest.raises(ShapeError, match=r"list of \(x, y\) pairs"):
        net.SGD([np.zeros((4, 1))], 1, 1, 1.0)


# -- labels out of range -----------------------------------------------------------------------
@pytest.mark.parametrize("bad, found", [(2, "0..2"), (-1, "-1..1")])
def test_training_labels_out_of_range(net, data, bad, found):
    labels = data[1].copy()
    labels[2] = bad
    with pytest.raises(ShapeError, match=f"Y out of range: found {found}, expected 0..1"):
        train(net, data[0], labels)


def test_test_labels_out_of_range(net, data):
    with pytest.raises(ShapeError, match="test labels out of range: found 5..6"):
        train(net, *data, test=(data[0], data[1] + 5))


def test_evaluate_label_out_of_range(net):
    with pytest.raises(ShapeError, match="out of range: found 7..7, expected 0..1"):
        net.evaluate([(np.zeros((4, 1)), 7)])


def test_labels_not_integers(net, data):
    with pytest.raises(ShapeError, match="must be integers"):
        train(net, data[0], data[1] + 0.5)


# -- NaN and inf -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_x(net, data, value):
    X = data[0].copy()
    X[1, 3] = value
    with pytest.raises(ShapeError, match="X contains NaN or inf"):
        train(net, X, data[1])
    with pytest.raises(ShapeError, match="contains NaN or inf"):
        net.feedforward(X)


def test_nan_in_one_hot_y(net, data):
    Y = np.eye(2)[:, data[1]]
    Y[0, 0] = np.nan
    with pytest.raises(ShapeError, match="Y contains NaN or inf"):
        train(net, data[0], Y)
    with pytest.raises(ShapeError, match="y contains NaN or inf"):
        net.backprop(data[0], Y)


def test_nan_in_test_x(net, data):
    Xt = data[0].copy()
    Xt[0, 0] = np.nan
    with pytest.raises(ShapeError, match="test X contains NaN or inf"):
        train(net, *data, test=(Xt, data[1]))


def test_none_in_an_object_array_is_not_a_silent_nan(net):
    X = np.array([[0.5, None]] * 4, dtype=object)
    with pytest.raises(ShapeError, match="NaN or inf"):
        net.feedforward(X)


# -- eta ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta, says", [(0, "> 0"), (0.0, "> 0"), (-3.0, "> 0"),
                                       (float("nan"), "finite"), (float("inf"), "finite"),
                                       ("3.0", "finite number")])
def test_bad_eta(net, data, eta, says):
    with pytest.raises(ConfigError, match=f"eta must be .*{says}"):
        train(net, *data, eta=eta)


def test_bad_eta_in_the_book_api(net):
    pair = [(np.zeros((4, 1)), np.array([[1.0], [0.0]]))]
    with pytest.raises(ConfigError, match="eta must be > 0"):
        net.update_mini_batch(pair, 0.0)
    with pytest.raises(ConfigError, match="eta must be > 0"):
        net.SGD(pair, 1, 1, -1.0)


def test_negative_lmbda(net, data):
    with pytest.raises(ConfigError, match="lmbda must be >= 0"):
        train(net, *data, lmbda=-0.1)


# -- batch_size and epochs ---------------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, -1, N + 1, 10_000])
def test_batch_size_out_of_range(net, data, bs):
    """Below 1 the settings are refused before the data is looked at; above the number of
    samples, with it."""
    want = f"between 1 and {N}" if bs > 0 else ">= 1"
    with pytest.raises(ConfigError, match=f"batch_size must be {want}, got {bs}"):
        train(net, *data, batch_size=bs)


def test_batch_size_not_an_integer(net, data):
    with pytest.raises(ConfigError, match="batch_size must be an integer, got 2.5"):
        train(net, *data, batch_size=2.5)


def test_batch_size_equal_to_the_data_is_fine(net, data):
    assert len(train(net, *data, batch_size=N)) == 1


def test_negative_epochs(net, data):
    with pytest.raises(ConfigError, match="epochs must be >= 0, got -1"):
        train(net, *data, epochs=-1)


def test_test_set_not_a_pair(net, data):
    with pytest.raises(ConfigError, match=r"test must be a pair \(X_test, labels\)"):
        train(net, *data, test=data[0])


# -- sizes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[784], []])
def test_sizes_with_fewer_than_two_layers(sizes):
    with pytest.raises(ConfigError, match="at least 2 layers"):
        fastbp.Network(sizes)


@pytest.mark.parametrize("sizes", [[784, 0, 10], [784, -3, 10], [0, 10]])
def test_sizes_not_positive(sizes):
    with pytest.raises(ConfigError, match=r"every layer size must be >= 1, got \["):
        fastbp.Network(sizes)


@pytest.mark.parametrize("sizes", [[784, 2.5, 10], "784,30,10", 784, None])
def test_sizes_not_integers(sizes):
    with pytest.raises(ConfigError, match="sizes must be a list of integers"):
        fastbp.Network(sizes)


# -- assigning parameters ----------------------------------------------------------------------
def test_wrong_shaped_weight_names_layer_and_both_shapes(net):
    with pytest.raises(ShapeError, match=r"weights\[1\] \(layer 3\) must have shape \(2, 3\), "
                                         r"got \(3, 2\)"):
        net.weights[1] = np.zeros((3, 2))


def test_wrong_shaped_bias(net):
    with pytest.raises(ShapeError, match=r"biases\[0\] \(layer 2\) must have shape \(3, 1\), "
                                         r"got \(3,\)"):
        net.biases[0] = np.zeros(3)


def test_negative_index_names_the_real_layer(net):
    with pytest.raises(ShapeError, match=r"weights\[-2\] \(layer 2\) must have shape \(3, 4\)"):
        net.weights[-2] = np.zeros((4, 3))


def test_wrong_number_of_weight_arrays(net):
    with pytest.raises(ShapeError, match="expected 2 arrays for weights, got 1"):
        net.weights = [np.zeros((3, 4))]


def test_rejected_assignment_leaves_the_network_alone(net):
    before = net.weights[0]
    with pytest.raises(ShapeError):
        net.weights = [np.ones((3, 4)), np.ones((3, 3))]
    np.testing.assert_array_equal(net.weights[0], before)


def test_nan_weight(net):
    w = net.weights[0].copy()
    w[0, 0] = np.nan
    with pytest.raises(ShapeError, match=r"weights\[0\] \(layer 2\) contains NaN or inf"):
        net.weights[0] = w


# -- init, cost, dtype, device -----------------------------------------------------------------
def test_bad_init():
    with pytest.raises(ConfigError, match=r"init must be one of \('standard', 'scaled'\), "
                                          r"got 'xavier'"):
        fastbp.Network(SIZES, init="xavier")


def test_bad_cost_name():
    with pytest.raises(ConfigError, match="unknown cost 'hinge'.*cross-entropy.*quadratic"):
        fastbp.Network(SIZES, cost="hinge")


def test_cost_object_without_its_methods():
    with pytest.raises(ConfigError, match="lacks fn, delta"):
        fastbp.Network(SIZES, cost=object())


@pytest.mark.parametrize("dtype, says", [("int32", "not supported"),
                                         ("floaty", "not a NumPy dtype"),
                                         ("complex64", "not supported")])
def test_bad_dtype(dtype, says):
    with pytest.raises(ConfigError, match=f"dtype '{dtype}' is {says}.*float32"):
        fastbp.Network(SIZES, dtype=dtype)


def test_bad_device():
    with pytest.raises(DeviceError, match="malformed device string 'gpu'.*cuda"):
        fastbp.Network(SIZES, device="gpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        fastbp.Network(SIZES, device="tpu")


def test_gradcheck_needs_float64(net, data):
    with pytest.raises(ConfigError, match="float64"):
        fastbp.gradcheck(net, data[0], np.eye(2)[:, data[1]])


# -- truncated or corrupt IDX files ------------------------------------------------------------
IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_idx_data(tmp_path, suffix):
    path = write_idx(tmp_path / f"f{suffix}", idx_bytes(IMAGES)[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("cut", [0, 2, 5, 11])
def test_truncated_idx_header(tmp_path, cut):
    path = write_idx(tmp_path / "f", idx_bytes(IMAGES)[:cut])
    with pytest.raises(DataError, match="truncated while reading the (magic number|dimensions)"):
        read_idx(path)


def test_idx_bad_magic():
    with pytest.raises(DataError, match="bad magic number 08030803"):
        parse_idx(idx_bytes(IMAGES, magic=b"\x08\x03"))


def test_idx_unknown_type_code():
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        parse_idx(idx_bytes(IMAGES, code=0x07))


def test_idx_zero_dimensions():
    with pytest.raises(DataError, match="0 dimensions"):
        parse_idx(b"\x00\x00\x08\x00" + bytes(10))


def test_idx_trailing_bytes():
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(idx_bytes(IMAGES) + b"\x00")


def test_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(IMAGES)))
    blob[12:20] = b"\xff" * 8
    path = tmp_path / "f.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="not a readable IDX file"):
        read_idx(path)


def test_missing_idx_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dims, says", [([1 << 20, 1 << 20], "more than 4294967296 bytes"),
                                        ([1 << 15, 1 << 15], "truncated|more than")])
def test_lying_header_allocates_nothing_big(tmp_path, suffix, dims, says):
    """A header claiming 2^40 (or 1 GiB of) bytes in a tiny file fails without allocating it."""
    path = write_idx(tmp_path / f"liar{suffix}", idx_bytes(IMAGES, dims=dims))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=says):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
