"""``net.save`` / ``fastbp.load``: the pickle-free format, bit-for-bit resume, atomic saves, and
refusal of anything that is not an intact fastbp model."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp.errors import ModelFormatError
from fastbp.io import checkpoint
from fastbp.model import persist

SIZES = [12, 9, 7, 10]


def data(rng, n=60):
    return rng.random((SIZES[0], n)), rng.integers(0, SIZES[-1], n)


def params(net):
    return [*net.weights, *net.biases]


def same_params(a, b):
    return all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(params(a), params(b)))


def trained(rng, tmp_path, dtype="float64", cost="quadratic", init="standard", epochs=2):
    net = fastbp.Network(SIZES, seed=11, dtype=dtype, cost=cost, init=init)
    X, y = data(rng)
    net.train(X, y, epochs=epochs, batch_size=8, eta=0.7, test=data(rng, 30))
    return net, net.save(tmp_path / "model.npz")


# -- round trip --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cost, init", [("quadratic", "standard"), ("cross-entropy", "scaled")])
def test_round_trip_keeps_everything(rng, tmp_path, dtype, cost, init):
    net, path = trained(rng, tmp_path, dtype, cost, init)
    back = fastbp.load(path)
    assert back.sizes == SIZES and back.dtype == dtype and back.init == init
    assert back.cost is net.cost
    assert same_params(net, back)
    assert back.rng.bit_generator.state == net.rng.bit_generator.state
    assert back.history == net.history and len(back.history) == 2
    assert back.history.as_dicts() == net.history.as_dicts()


def test_the_file_is_a_plain_documented_npz(rng, tmp_path):
    net, path = trained(rng, tmp_path)
    with np.load(path, allow_pickle=False) as npz:
        names = sorted(npz.files)
        meta = json.loads(npz["metadata"].tobytes().decode("utf-8"))
        w1 = npz["weights_1"]
    assert names == sorted(["metadata", *[f"weights_{i}" for i in range(3)],
                            *[f"biases_{i}" for i in range(3)]])
    assert np.array_equal(w1, net.weights[1]) and w1.shape == (7, 9)
    assert meta["format"] == "fastbp-model" and meta["format_version"] == 3
    assert meta["kinds"] == ["sigmoid"] * 3
    assert meta["fastbp_version"] == fastbp.__version__
    assert meta["sizes"] == SIZES and meta["cost"] == "quadratic" and meta["dtype"] == "float64"
    assert meta["init"] == "standard" and meta["epoch"] == 2 and len(meta["history"]) == 2
    assert meta["rng"]["bit_generator"] == "PCG64"
    for key in checkpoint._TOP_KEYS:  # the module's docstring documents every key
        assert f'"{key}"' in checkpoint.__doc__


def test_extra_metadata_round_trips_and_must_be_json(rng, tmp_path):
    net, _ = trained(rng, tmp_path)
    path = net.save(tmp_path / "x.npz", extra={"train": {"eta": 0.7, "note": "é"}})
    assert persist.load_checkpoint(path).extra == {"train": {"eta": 0.7, "note": "é"}}
    with pytest.raises(ModelFormatError, match="not JSON"):
        net.save(tmp_path / "y.npz", extra={"bad": object()})
    assert not (tmp_path / "y.npz").exists()


def test_load_onto_a_device(rng, tmp_path):
    net, path = trained(rng, tmp_path)
    assert fastbp.load(path, device="cpu").device == "cpu"
    with pytest.raises(fastbp.DeviceError):
        fastbp.load(path, device="gpu")


# -- resume: bit for bit -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_four_epochs_equal_two_plus_save_plus_two(rng, tmp_path, dtype):
    X, y = data(rng, 90)
    test = data(rng, 40)
    kw = dict(batch_size=7, eta=0.9, lmbda=0.3, test=test)
    straight = fastbp.Network(SIZES, seed=5, dtype=dtype)
    straight.train(X, y, epochs=4, **kw)

    first = fastbp.Network(SIZES, seed=5, dtype=dtype)
    first.train(X, y, epochs=2, **kw)
    first.save(tmp_path / "half.npz")
    del first
    resumed = fastbp.load(tmp_path / "half.npz")
    more = resumed.train(X, y, epochs=2, **kw)

    assert same_params(straight, resumed)  # exact equality, not closeness
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert [r.epoch for r in more] == [2, 3]
    key = lambda h: [(r.epoch, r.cost, r.accuracy, r.correct) for r in h]  # noqa: E731
    assert key(resumed.history) == key(straight.history)


# -- atomic saves --------------------------------------------------------------------------------
def test_a_failed_save_leaves_the_old_file_and_no_temporary(rng, tmp_path, monkeypatch):
    net, path = trained(rng, tmp_path)
    before = path.read_bytes()
    net.train(*data(rng), epochs=1, batch_size=8, eta=0.7)

    def half_then_fail(f, **arrays):
        f.write(b"PK\x03\x04 half a model")
        raise OSError("disk full (test)")

    monkeypatch.setattr(checkpoint.np, "savez", half_then_fail)
    with pytest.raises((OSError, ModelFormatError), match="disk full"):
        net.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    assert len(fastbp.load(path).history) == 2


def test_save_replaces_and_takes_the_umasks_mode(rng, tmp_path):
    """A save's file has the mode the umask gives, never the replaced file's."""
    net, path = trained(rng, tmp_path)
    os.chmod(path, 0o606)
    old = os.umask(0o027)
    try:
        net.save(path)
        assert (path.stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)
    fresh = net.save(tmp_path / "fresh.npz")
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.npz", "model.npz"]


def test_save_into_a_missing_directory_is_a_clear_error(rng, tmp_path):
    net, _ = trained(rng, tmp_path)
    with pytest.raises(ModelFormatError, match="does not exist"):
        net.save(tmp_path / "no" / "such" / "m.npz")


CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import fastbp
    from fastbp.io import checkpoint

    path, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X, y = rng.random((784, 16)), rng.integers(0, 10, 16)
    net = fastbp.Network([784, 1000, 10], seed=0, dtype="float64")  # about 6.4 MB a save
    saves = 0

    if mode == "before-rename":  # stop inside the second save, the new file complete
        real_replace = os.replace
        def replace(src, dst):
            if saves == 1:
                print("renaming", flush=True)
                time.sleep(600)
            real_replace(src, dst)
        os.replace = replace
    elif mode == "mid-write":  # stop inside the second save, half of it written
        real_savez = np.savez
        def savez(f, **arrays):
            if saves == 1:
                import io
                buf = io.BytesIO()
                real_savez(buf, **arrays)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                print("half", flush=True)
                time.sleep(600)
            real_savez(f, **arrays)
        checkpoint.np.savez = savez

    def save_each_epoch(record, net):
        global saves
        print("saving", record.epoch, time.perf_counter(), flush=True)
        net.save(path)
        saves += 1
        print("saved", record.epoch, time.perf_counter(), flush=True)

    net.train(X, y, epochs=100000, batch_size=16, eta=0.1, callback=save_each_epoch)
""")


def start_child(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "m.npz"), mode],
                            stdout=subprocess.PIPE, text=True)


def kill(proc):
    """SIGKILL the child; returns what it printed and we had not read yet."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rest = proc.stdout.read()
    proc.stdout.close()
    return rest


@pytest.mark.parametrize("mode, signal_line", [("before-rename", "renaming"),
                                               ("mid-write", "half")])
def test_killed_inside_a_save_keeps_the_previous_model(tmp_path, mode, signal_line):
    proc = start_child(tmp_path, mode)
    try:
        assert proc.stdout.readline().split()[:2] == ["saving", "0"]
        assert proc.stdout.readline().split()[:2] == ["saved", "0"]
        assert proc.stdout.readline().split()[:2] == ["saving", "1"]
        assert proc.stdout.readline().strip() == signal_line
    finally:
        kill(proc)
    net = fastbp.load(tmp_path / "m.npz")
    assert len(net.history) == 1  # the first save, whole
    temporary = [p for p in tmp_path.iterdir() if p.name.startswith(".m.npz.")]
    assert len(temporary) == 1  # the interrupted save, never renamed
    if mode == "mid-write":
        with pytest.raises(ModelFormatError):
            fastbp.load(temporary[0])
    else:
        assert len(fastbp.load(temporary[0]).history) == 2


@pytest.mark.slow
def test_killed_at_random_while_saving_repeatedly_leaves_a_loadable_model(tmp_path):
    """Six runs, each killed at a random moment of its third save (timed from its second)."""
    chance = random.Random(20261125)
    inside = 0
    for attempt in range(6):
        d = tmp_path / f"run{attempt}"
        d.mkdir()
        proc = start_child(d, "plain")
        try:
            lines = [proc.stdout.readline().split() for _ in range(5)]
            assert [line[:2] for line in lines] == [["saving", "0"], ["saved", "0"],
                                                    ["saving", "1"], ["saved", "1"],
                                                    ["saving", "2"]]
            took = float(lines[3][2]) - float(lines[2][2])
            time.sleep(chance.uniform(0.0, 1.2 * took))
        finally:
            rest = [line.split()[:2] for line in kill(proc).splitlines()]
        net = fastbp.load(d / "m.npz")
        # The last save that returned before the kill (save 1, or a later one when training
        # is fast), and whether the next one had started: the file holds the model of the
        # last save, or of the one in flight, whole; never a mix or a broken file.
        # (a line cut by the kill may hold one word only)
        last = max([1] + [int(line[1]) for line in rest
                          if len(line) == 2 and line[0] == "saved" and line[1].isdigit()])
        started = last == 1 or ["saving", str(last + 1)] in rest
        allowed = (last + 1, last + 2) if started else (last + 1,)
        assert len(net.history) in allowed
        assert all(np.isfinite(p).all() for p in params(net))
        inside += any(p.name.startswith(".m.npz.") for p in d.iterdir())
    assert inside >= 1, "no kill landed inside a save: the test did not test anything"


# -- refusals ------------------------------------------------------------------------------------
def members(path):
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_npz(path, content):
    with zipfile.ZipFile(path, "w") as z:
        for name, data_ in content.items():
            z.writestr(name, data_)
    return path


def npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def with_metadata(path, out, **changes):
    content = members(path)
    meta = json.loads(np.load(io.BytesIO(content["metadata.npy"])).tobytes())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    content["metadata.npy"] = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return write_npz(out, content)


def test_truncated_files_are_refused(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    whole = path.read_bytes()
    cut = tmp_path / "cut.npz"
    for size in sorted({0, 1, 10, 100, len(whole) // 3, len(whole) // 2, len(whole) - 200,
                        len(whole) - 1}):
        cut.write_bytes(whole[:size])
        with pytest.raises(ModelFormatError, match="truncated|damaged|not a fastbp model"):
            fastbp.load(cut)


def test_a_corrupted_byte_is_refused(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    data_ = bytearray(path.read_bytes())
    start = data_.find(b"weights_0.npy") + 200  # inside weights_0's stored bytes
    data_[start] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data_))
    with pytest.raises(ModelFormatError, match="damaged|truncated"):
        fastbp.load(bad)


def test_a_newer_format_version_is_refused_with_upgrade_advice(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    bad = with_metadata(path, tmp_path / "new.npz", format_version=5, fastbp_version="9.0")
    with pytest.raises(ModelFormatError, match="format version 5.*reads versions 1 to 4.*upgrade"):
        fastbp.load(bad)
    bad = with_metadata(path, tmp_path / "zero.npz", format_version=0)
    with pytest.raises(ModelFormatError, match="invalid format_version 0"):
        fastbp.load(bad)


def test_a_version_1_file_loads_as_sigmoid_layers(rng, tmp_path):
    """Files written before layer kinds were recorded (version 1, no ``kinds``) still load:
    every layer of theirs is sigmoid."""
    net, path = trained(rng, tmp_path)
    old = with_metadata(path, tmp_path / "v1.npz", format_version=1, kinds=None)
    back = fastbp.load(old)
    assert back.kinds == ("sigmoid",) * (len(net.sizes) - 1)
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    bad = with_metadata(path, tmp_path / "v2.npz", kinds=None)
    with pytest.raises(ModelFormatError, match="lacks kinds"):
        fastbp.load(bad)


def test_layer_kinds_round_trip(tmp_path):
    """A relu network with a softmax output saves its kinds and loads as the same network."""
    net = fastbp.Network([6, 5, 4, 3], activation=["relu", "tanh"], cost="log-likelihood",
                         seed=2)
    net.save(tmp_path / "k.npz")
    back = fastbp.load(tmp_path / "k.npz")
    assert back.kinds == ("relu", "tanh", "softmax") and back.cost is net.cost
    X = np.random.default_rng(0).random((6, 5))
    assert np.array_equal(back.feedforward(X), net.feedforward(X))
    bad = with_metadata(tmp_path / "k.npz", tmp_path / "bad.npz", kinds=["relu", "tanh"])
    with pytest.raises(ModelFormatError, match="kinds"):
        fastbp.load(bad)


@pytest.mark.parametrize("changes, says", [
    ({"format": "keras"}, "not a fastbp model \\(format 'keras'"),
    ({"sizes": [12, 9, 8, 10]}, "weights_1 has shape \\(7, 9\\), expected \\(8, 9\\)"),
    ({"sizes": [12, 9, 10]}, "unexpected biases_2, weights_2"),
    ({"sizes": [12, 9, 7, 10, 4]}, "missing biases_3, weights_3"),
    ({"dtype": "float32"}, "weights_0 has dtype float64, expected float32"),
    ({"dtype": "int8"}, "unsupported dtype 'int8'"),
    ({"cost": "hinge"}, "invalid metadata .*unknown cost 'hinge'"),
    ({"epoch": 5}, "says 5 epochs but holds a history of 2"),
    ({"rng": {"bit_generator": "os.system"}}, "unknown random generator 'os.system'"),
    ({"rng": {"bit_generator": "PCG64", "state": "x"}}, "invalid random state"),
    ({"history": [{"epoch": 0}]}, "history entry 0 must have the keys"),
    ({"init": None}, "metadata lacks init"),
])
def test_inconsistent_metadata_is_refused(rng, tmp_path, changes, says):
    _, path = trained(rng, tmp_path)
    bad = with_metadata(path, tmp_path / "bad.npz", **changes)
    with pytest.raises(ModelFormatError, match=says):
        fastbp.load(bad)


def test_wrong_shapes_and_dtypes_in_the_arrays_are_refused(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    for name, array, says in [
        ("weights_2.npy", np.zeros((10, 6)), r"weights_2 has shape \(10, 6\), expected \(10, 7"),
        ("biases_0.npy", np.zeros((9,)), "biases_0 has shape \\(9,\\), expected \\(9, 1\\)"),
        ("biases_1.npy", np.zeros((7, 1), dtype=np.float32), "dtype float32, expected float64"),
        ("weights_0.npy", np.full((9, 12), np.nan), "weights_0 contains NaN or inf"),
    ]:
        content = members(path)
        content[name] = npy(array)
        with pytest.raises(ModelFormatError, match=says):
            fastbp.load(write_npz(tmp_path / "bad.npz", content))


def test_pickled_objects_are_refused_and_never_run(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    content = members(path)
    content["weights_0.npy"] = npy(np.array([Boom()], dtype=object))
    with pytest.raises(ModelFormatError, match="pickled Python objects.*refused"):
        fastbp.load(write_npz(tmp_path / "objects.npz", content))
    raw = tmp_path / "model.pkl"
    raw.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFormatError, match="not a fastbp model"):
        fastbp.load(raw)
    assert not marker.exists()


def test_other_files_are_refused(rng, tmp_path):
    _, path = trained(rng, tmp_path)
    with pytest.raises(ModelFormatError, match="no such model file"):
        fastbp.load(tmp_path / "absent.npz")
    with pytest.raises(ModelFormatError, match="no such model file"):
        fastbp.load(tmp_path)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(ModelFormatError, match="not a fastbp model"):
        fastbp.load(plain)
    content = members(path)
    del content["metadata.npy"]
    with pytest.raises(ModelFormatError, match="no metadata"):
        fastbp.load(write_npz(tmp_path / "nometa.npz", content))
    content = members(path)
    content["metadata.npy"] = npy(np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        fastbp.load(write_npz(tmp_path / "badjson.npz", content))
    content["metadata.npy"] = b"plain text, not an array"
    with pytest.raises(ModelFormatError):
        fastbp.load(write_npz(tmp_path / "text.npz", content))


def test_errors_are_fastbp_errors(rng, tmp_path):
    """Whoever catches ``fastbp.DataError`` (or ``FastbpError``) catches every refusal of a
    model file, and the message names the file."""
    assert issubclass(ModelFormatError, fastbp.DataError)
    assert issubclass(ModelFormatError, fastbp.FastbpError)
    _, path = trained(rng, tmp_path)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(Path(path).read_bytes()[:-40])
    for bad in (tmp_path / "absent.npz", damaged, tmp_path):
        with pytest.raises(fastbp.DataError) as info:
            fastbp.load(bad)
        assert isinstance(info.value, ModelFormatError) and str(bad) in str(info.value)
