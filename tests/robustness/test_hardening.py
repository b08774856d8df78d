"""Hardening, the library side: saves write only regular files (links followed, the umask's mode,
stale temporaries cleaned), an interrupted ``train`` keeps its last finished epoch, parameter
reads cannot be edited silently, inputs that overflow the dtype are refused, one network trains
in one thread at a time, and messages name the right cause. (The command line: ``*_cli.py``.)"""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp import ConfigError, DataError, ModelFormatError, SaveError, ShapeError
from fastbp.io import targets

SIZES = [6, 5, 3]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def devices_here() -> list[str]:
    """Every device of this install that runs here (cpu always)."""
    out = []
    for name in ("cpu", "cpu-jit", "array-api", "cuda"):
        try:
            fastbp.Network([2, 2], device=name)
        except fastbp.FastbpError:
            continue
        out.append(name)
    return out


DEVICES = devices_here()


def data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((SIZES[0], n)), rng.integers(0, SIZES[-1], n)


def params(net: fastbp.Network) -> list[np.ndarray]:
    return [np.array(p) for p in [*net.weights, *net.biases]]


# -- 1. saves write only regular files -------------------------------------------------------------
def special_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a socket, a directory and (as root) a character device like /dev/null."""
    out = {"FIFO": tmp_path / "fifo", "socket": tmp_path / "sock", "directory": tmp_path / "dir"}
    os.mkfifo(out["FIFO"])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(out["socket"]))
    sock.close()
    out["directory"].mkdir()
    if ROOT:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        out["character device"] = tmp_path / "null"
    return out


def test_a_save_never_replaces_a_device_fifo_socket_or_directory(tmp_path: Path) -> None:
    net = fastbp.Network(SIZES, seed=1)
    for kind, path in special_files(tmp_path).items():
        before = os.lstat(path)
        with pytest.raises(SaveError, match=f"it is a {kind}.*only regular files"):
            net.save(path)
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    net = fastbp.Network(SIZES, seed=1)
    (tmp_path / "runs").mkdir()
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "runs" / "5.npz")  # dangling until the first save
    net.save(link)
    assert link.is_symlink() and (tmp_path / "runs" / "5.npz").is_file()
    np.testing.assert_array_equal(fastbp.load(link).weights[0], net.weights[0])
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere" / "m.npz")
    with pytest.raises(SaveError, match=r"gone \(a symbolic link to .*nowhere/m\.npz\): "
                                        r"directory .*nowhere does not exist"):
        net.save(tmp_path / "gone")


@pytest.mark.skipif(not ROOT, reason="giving a link to another user needs root")
def test_a_link_of_another_user_in_a_shared_sticky_folder_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    link = shared / "m.npz"
    link.symlink_to(tmp_path / "victim")
    os.lchown(link, 4242, 4242)
    with pytest.raises(SaveError, match="belongs to another user"):
        fastbp.Network(SIZES).save(link)
    assert not (tmp_path / "victim").exists()


def test_the_mode_comes_from_the_umask_never_from_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(b"")
    path.chmod(0o666)  # world-writable, as the device the issue replaced
    old = os.umask(0o022)
    try:
        fastbp.Network(SIZES).save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert targets.file_mode() == 0o666 & ~old


# -- 4. an interrupt inside train keeps the last finished epoch ------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_epoch_gives_back_the_last_finished_one(device, error, tmp_path) -> None:
    X, y = data(400)
    straight = fastbp.Network(SIZES, seed=5, device=device)
    straight.train(X, y, epochs=4, batch_size=10, eta=0.5)
    net = fastbp.Network(SIZES, seed=5, device=device)
    net.train(X, y, epochs=2, batch_size=10, eta=0.5)
    kept, rng = params(net), net.rng.bit_generator.state

    def ctrl_c(done: int, cost: float, n: int) -> None:
        if 0 < done < n:  # half an epoch of updates made
            raise error("interrupted (test)")

    with pytest.raises(error):
        net.train(X, y, epochs=2, batch_size=10, eta=0.5, progress=ctrl_c)
    assert len(net.history) == 2 and net.rng.bit_generator.state == rng
    for a, b in zip(params(net), kept):
        np.testing.assert_array_equal(a, b)
    net.save(tmp_path / "m.npz")  # as `except KeyboardInterrupt: net.save(...)` would
    resumed = fastbp.load(tmp_path / "m.npz", device=device)
    resumed.train(X, y, epochs=2, batch_size=10, eta=0.5)
    for a, b in zip(params(resumed), params(straight)):
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert [r.cost for r in resumed.history] == [r.cost for r in straight.history]


# -- 5. stale temporary files of interrupted saves -------------------------------------------------
def test_stale_temporaries_of_fastbp_saves_are_removed_at_the_next_save(tmp_path: Path) -> None:
    day_old = time.time() - targets.STALE_SECONDS - 60
    names = {".m.npz.fastbp-abcd1234.tmp": True, ".old.npz.k2j4_x9q.tmp": True,
             ".m.npz.fastbp-fresh123.tmp": False, ".notes.txt.abcd1234.tmp": False,
             "keep.tmp": False}
    for name, old in names.items():
        (tmp_path / name).write_bytes(b"PK half a model")
        if old or name.endswith("txt.abcd1234.tmp") or name == "keep.tmp":
            os.utime(tmp_path / name, (day_old, day_old))
    fastbp.Network(SIZES).save(tmp_path / "m.npz")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"m.npz"} | {n for n, old in names.items() if not old}


# -- 7. parameter reads cannot be edited silently --------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_an_edit_of_a_read_parameter_raises_and_says_to_assign(device) -> None:
    net = fastbp.Network(SIZES, seed=2, device=device)
    before = params(net)
    edits = {"net.weights[0][0, 0] = 123.0": lambda: net.weights[0].__setitem__((0, 0), 123.0),
             "net.biases[1][:] = 7": lambda: net.biases[1].__setitem__(slice(None), 7),
             "net.weights[0] *= 0": lambda: net.weights[0].__imul__(0),
             "net.biases[0].fill(1)": lambda: net.biases[0].fill(1)}
    for what, edit in edits.items():
        with pytest.raises(ConfigError, match=r"read-only copy.*net\.(weights|biases)\[\d\] = w"):
            edit()
            pytest.fail(f"{what} was accepted")
    for a, b in zip(params(net), before):
        np.testing.assert_array_equal(a, b)
    w = net.weights[0].copy()  # the way that works
    w[0, 0] = 123.0
    net.weights[0] = w
    assert net.weights[0][0, 0] == 123.0
    assert type(net.weights[0] * 2) is np.ndarray  # arithmetic gives ordinary arrays


def test_weights_plus_biases_is_a_list_as_in_the_book() -> None:
    net = fastbp.Network(SIZES)
    both = net.weights + net.biases
    assert isinstance(both, list) and len(both) == 4
    assert [a.shape for a in both] == [(5, 6), (3, 5), (5, 1), (3, 1)]
    assert len([np.zeros(1)] + net.weights) == 3 and len(net.biases + []) == 2


# -- 8. finiteness after the cast to the network's dtype -------------------------------------------
@pytest.mark.parametrize("dtype, scale, top", [("float32", 1e39, "3.40282e+38"),
                                               ("float16", 7e4, "65504")])
def test_inputs_that_overflow_the_dtype_are_refused_naming_the_overflow(dtype, scale, top):
    X, y = data()
    net = fastbp.Network(SIZES, dtype=dtype, seed=1)
    says = rf"overflows {dtype}: it holds values beyond ±{re.escape(top)}"
    with pytest.raises(ShapeError, match="X " + says):
        net.train(X * scale, y, epochs=1, batch_size=10, eta=0.5)
    with pytest.raises(ShapeError, match="test X " + says):
        net.train(X, y, epochs=1, batch_size=10, eta=0.5, test=(X * scale, y))
    with pytest.raises(ShapeError, match=says):
        net.predict(X * scale)
    with pytest.raises(ShapeError, match=r"weights\[0\] \(layer 2\) " + says):
        net.weights[0] = np.full((5, 6), scale)
    assert len(net.history) == 0  # refused before any epoch


# -- 9. one network, one training thread -----------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_a_second_thread_entering_train_gets_a_clear_error(device) -> None:
    X, y = data(2000)
    net = fastbp.Network(SIZES, seed=4, device=device)
    started, tried = threading.Event(), threading.Event()
    results: list = []

    def hold(done: int, cost: float, n: int) -> None:
        started.set()
        tried.wait(30)

    def first() -> None:
        results.append(net.train(X, y, epochs=1, batch_size=10, eta=0.5, progress=hold))

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(30)
    try:
        with pytest.raises(ConfigError, match="already training in another thread"):
            net.train(X, y, epochs=1, batch_size=10, eta=0.5)
    finally:
        tried.set()
        t.join(60)
    assert len(results) == 1 and len(net.history) == 1
    with pytest.raises(ConfigError, match="train called from its own callback"):
        net.train(X, y, epochs=1, batch_size=10, eta=0.5,
                  callback=lambda r, n: n.train(X, y, epochs=1, batch_size=10, eta=0.5))
    net.train(X, y, epochs=1, batch_size=10, eta=0.5)  # free again afterwards


# -- 10 (library part). sizes no array can hold ----------------------------------------------------
def test_a_layer_no_array_can_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="more than any array can address"):
        fastbp.Network([4, 2**63, 3])


# -- 13. messages that name the right cause --------------------------------------------------------
def test_an_unreadable_model_file_says_so(tmp_path: Path) -> None:
    mem = Path("/proc/self/mem")  # a regular file that reading at offset 0 fails on, even as root
    if mem.is_file():
        with pytest.raises(ModelFormatError, match="cannot be read"):
            fastbp.load(mem)
    (tmp_path / "link.npz").symlink_to(tmp_path / "gone.npz")
    with pytest.raises(ModelFormatError, match="a symbolic link to .*gone.npz, which does not"):
        fastbp.load(tmp_path / "link.npz")
    if not ROOT:  # root reads a file of mode 000
        path = fastbp.Network(SIZES).save(tmp_path / "m.npz")
        path.chmod(0)
        with pytest.raises(ModelFormatError, match="cannot be read .*ermission"):
            fastbp.load(path)


def test_a_short_labels_file_is_blamed_not_the_images(tmp_path: Path, mnist_files) -> None:
    from idxfiles import idx_bytes

    from fastbp.data.mnist import load_mnist

    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{name}.gz").symlink_to(mnist_files / f"{name}.gz")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(59_999, np.uint8)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: MNIST train labels have "
                                        r"shape \(59999,\), expected \(60000,\)"):
        load_mnist(tmp_path, download=False)


@pytest.fixture
def mnist_files() -> Path:
    from conftest import mnist_dir

    d = mnist_dir()
    if d is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    return d
