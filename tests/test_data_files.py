"""Data files read within what they should hold: IDX headers checked against each data set's
known shapes and type before the data is read, the file that is wrong named, the published
checksum verified for every file in fastbp's cache, and a file where a cache folder should be
reported in one line."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir
from idxfiles import write_idx
from nonregular import make_fifo, needs_fifo, returns_within

import fastbp
from fastbp.data import mnist as mnistmod
from fastbp.data.idx import Expected, read_idx
from fastbp.errors import DataError

TEST_LABELS = Expected((10_000,), "uint8", "MNIST test labels")


def lying_gzip(path: Path, dims: list[int], zeros: int) -> Path:
    """A gzip IDX file of ``uint8`` whose header claims ``dims`` and whose data is ``zeros``
    zero bytes, compressed as it is made (the test never holds it whole)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    parts = [packer.compress(b"\0\0\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I",
                                                                          *dims))]
    block = bytes(1 << 20)
    for start in range(0, zeros, len(block)):
        parts.append(packer.compress(block[:min(len(block), zeros - start)]))
    parts.append(packer.flush())
    path.write_bytes(b"".join(parts))
    return path


def peak_while(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        try:
            result = call()
        except DataError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_label_file_claiming_more_than_the_set_is_refused_from_its_header(tmp_path):
    liar = lying_gzip(tmp_path / "labels.gz", [100_000_000], 100_000_000)
    error, peak = peak_while(lambda: read_idx(liar, expect=TEST_LABELS))
    assert isinstance(error, DataError)
    assert str(error) == (f"{liar}: MNIST test labels have shape (100000000,), expected "
                          "(10000,) (from its header; the data was not read)")
    assert peak < 1_000_000


def test_mnist_reads_no_file_beyond_its_known_shape(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10_000, 28, 28), np.uint8))
    lying_gzip(tmp_path / "t10k-labels-idx1-ubyte.gz", [100_000_000], 100_000_000)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / f"{stem}.gz").write_bytes(b"not read")
    error, peak = peak_while(lambda: fastbp.datasets.load_mnist(tmp_path, download=False))
    assert isinstance(error, DataError)
    assert str(error).startswith(f"{tmp_path / 't10k-labels-idx1-ubyte.gz'}: MNIST test labels "
                                 "have shape (100000000,), expected (10000,)")
    assert peak < 60_000_000  # the test images (7.8 MB) and their float copy, not 100 MB twice


def test_a_wrong_type_of_file_is_blamed_on_that_file(tmp_path):
    for stem, shape in (("train-images-idx3-ubyte", (60_000, 28, 28)),
                        ("train-labels-idx1-ubyte", (60_000,)),
                        ("t10k-images-idx3-ubyte", (10_000, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (10_000,))):
        dtype = np.int8 if stem == "t10k-images-idx3-ubyte" else np.uint8
        write_idx(tmp_path / f"{stem}.gz", np.zeros(shape, dtype))
    with pytest.raises(DataError) as info:
        fastbp.datasets.load_fashion_mnist(tmp_path)
    assert str(info.value) == (f"{tmp_path / 't10k-images-idx3-ubyte.gz'}: Fashion-MNIST test "
                               "images are uint8 (IDX type 0x08), this file holds int8 (type 0x09)")


def test_labels_out_of_range_are_blamed_on_the_labels(tmp_path):
    for stem, shape in (("train-images-idx3-ubyte", (60_000, 28, 28)),
                        ("train-labels-idx1-ubyte", (60_000,)),
                        ("t10k-images-idx3-ubyte", (10_000, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (10_000,))):
        fill = 12 if stem.startswith("t10k-labels") else 0
        write_idx(tmp_path / f"{stem}.gz", np.full(shape, fill, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: not KMNIST test labels "
                                        r"\(a label of 12, outside 0..9\)"):
        fastbp.datasets.load_kmnist(tmp_path)


@needs_fifo
def test_a_fifo_as_a_data_file_is_refused_at_once(tmp_path):
    fifo = make_fifo(tmp_path / "labels")
    error = returns_within(10, lambda: read_idx(fifo), fifo=fifo)
    assert isinstance(error, DataError)
    assert str(error) == f"{fifo}: it is a FIFO (named pipe); fastbp reads only regular files"


@pytest.fixture
def cache_home(monkeypatch, tmp_path):
    """An empty user cache, no $FASTBP_DATA, no network."""
    pooch = pytest.importorskip("pooch")

    def no_network(url, *args, **kwargs):
        raise ConnectionError("network is unreachable (test)")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mnistmod._verified.clear()
    return tmp_path / "cache" / "fastbp"


def real_mnist() -> Path:
    folder = mnist_dir()
    if folder is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    return folder


def test_mnist_files_in_the_fashion_cache_are_refused_naming_the_file(cache_home):
    shutil.copytree(real_mnist(), cache_home / "fashion-mnist")
    with pytest.raises(DataError) as info:
        fastbp.datasets.load_fashion_mnist()
    first = cache_home / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    md5 = hashlib.md5(first.read_bytes()).hexdigest()
    assert str(info.value) == (
        f"{first}: not Fashion-MNIST's train-images-idx3-ubyte (checksum mismatch (md5 {md5}, "
        "expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d)); the cache holds only verified files: "
        "delete it to download it again, or pass --data fashion-mnist:DIR to use the files of "
        "another folder")


def test_an_uncompressed_file_in_the_kmnist_cache_cannot_be_verified(cache_home):
    folder = cache_home / "kmnist"
    folder.mkdir(parents=True)
    for stem in mnistmod.FILES.values():
        (folder / stem).write_bytes(b"")
    with pytest.raises(DataError, match=r"kmnist/train-images-idx3-ubyte: not KMNIST's "
                                        r"train-images-idx3-ubyte \(cannot be verified \(the "
                                        r"published MD5 is that of train-images-idx3-ubyte.gz"):
        fastbp.datasets.load_kmnist()


def test_the_mnist_cache_is_verified_and_loads_when_intact(cache_home):
    real = real_mnist()
    folder = cache_home / "mnist"
    shutil.copytree(real, folder)
    assert len(fastbp.datasets.load_mnist().test) == 10_000
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[8] = (data[8] + 1) % 10  # one label changed: a valid file, not MNIST's
    labels.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: not MNIST's "
                                        r"t10k-labels-idx1-ubyte \(checksum mismatch"):
        fastbp.datasets.load_mnist()


@pytest.mark.parametrize("blocker", ["kmnist", "."])
def test_a_file_where_the_cache_folder_should_be_is_one_line(cache_home, blocker):
    place = (cache_home / blocker).resolve()
    place.parent.mkdir(parents=True, exist_ok=True)
    place.write_text("not a folder")
    with pytest.raises(DataError) as info:
        fastbp.datasets.load_kmnist()
    where = "" if blocker == "kmnist" else f" (for its KMNIST cache {cache_home / 'kmnist'})"
    assert str(info.value) == (f"{place}: a file where fastbp needs a folder{where}: move it "
                               "away, or pass --data kmnist:DIR")


def test_the_cli_says_so_in_one_line_with_status_2(cache_home, tmp_path):
    place = cache_home / "kmnist"
    place.parent.mkdir(parents=True)
    place.write_text("not a folder")
    out = subprocess.run([sys.executable, "-m", "fastbp", "train", "--data", "kmnist",
                          "--epochs", "1"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"fastbp: error: {place}: a file where fastbp needs a folder: move it away, or pass "
        "--data kmnist:DIR"]


def test_a_linked_file_is_blamed_by_the_name_in_the_folder(tmp_path):
    folder, elsewhere = tmp_path / "fashion", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    for stem, shape in (("train-images-idx3-ubyte", (60_000, 28, 28)),
                        ("train-labels-idx1-ubyte", (60_000,)),
                        ("t10k-images-idx3-ubyte", (10_000, 28, 28))):
        write_idx(folder / f"{stem}.gz", np.zeros(shape, np.uint8))
    write_idx(elsewhere / "labels.gz", np.zeros(9_999, np.uint8))
    (folder / "t10k-labels-idx1-ubyte.gz").symlink_to(elsewhere / "labels.gz")
    with pytest.raises(DataError) as info:
        fastbp.datasets.load_fashion_mnist(folder)
    assert str(info.value).startswith(f"{folder / 't10k-labels-idx1-ubyte.gz'}: Fashion-MNIST "
                                      "test labels have shape (9999,), expected (10000,)")
