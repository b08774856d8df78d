"""Fashion-MNIST and KMNIST: the same IDX reader, the same verified download and cache, by name
in Python and on the command line. The IDX files are made here (never downloaded): each image's
row ``label`` is white, so a network learns them in an epoch."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from idxfiles import idx_bytes

import fastbp
from fastbp import cli
from fastbp.data import sets
from fastbp.errors import ConfigError, DataError


def fake_set(folder: Path, seed: int) -> dict[str, np.ndarray]:
    """The four files of a 60,000 / 10,000 set in ``folder`` (gzip); returns the labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for part, n in (("train", 60_000), ("t10k", 10_000)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = np.zeros((n, 28, 28), np.uint8)
        x[np.arange(n), y + 9, :] = 255
        for kind, a in (("images-idx3", x), ("labels-idx1", y)):
            (folder / f"{part}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(idx_bytes(a), compresslevel=1, mtime=0))
        labels[part] = y
    return labels


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fashion")
    return folder, fake_set(folder, 7)


@pytest.fixture
def fake_md5(fake, monkeypatch):
    """Published checksums that the made-up files match, so the cache takes them."""
    md5 = {p.name[:-3]: hashlib.md5(p.read_bytes()).hexdigest() for p in fake[0].glob("*.gz")}
    for name, spec in list(sets.SETS.items()):
        monkeypatch.setitem(sets.SETS, name, dataclasses.replace(spec, md5=md5))
    return md5


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty cache and no network (a download attempt fails at once)."""
    pooch = pytest.importorskip("pooch")

    def no_network(url, *args, **kwargs):
        raise ConnectionError("network is unreachable (test)")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("loader", [
    fastbp.datasets.load_fashion_mnist, fastbp.datasets.load_kmnist,
    lambda path: fastbp.datasets.load("Fashion_MNIST", path)])
def test_a_folder_of_the_four_files_loads_as_the_book_splits(fake, loader):
    folder, labels = fake
    data = loader(folder)
    assert [len(s) for s in data] == [50_000, 10_000, 10_000]
    assert np.array_equal(data.train.labels, labels["train"][:50_000])
    assert np.array_equal(data.validation.labels, labels["train"][50_000:])
    assert np.array_equal(data.test.labels, labels["t10k"])
    assert data.train.X.shape == (784, 50_000) and data.train.images.max() == 1.0
    row = data.test.images[0].reshape(28, 28)
    assert (row[labels["t10k"][0] + 9] == 1.0).all() and row.sum() == 28


def test_a_folder_that_is_not_complete_names_the_set_and_the_files(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match="KMNIST is incomplete here: missing train-labels"):
        fastbp.datasets.load_kmnist(tmp_path)
    with pytest.raises(ConfigError, match="unknown data set 'cifar'"):
        fastbp.datasets.load("cifar")


def test_the_cache_is_used_and_a_failed_download_says_where_it_looked(fake, offline, fake_md5):
    with pytest.raises(DataError, match=r"Fashion-MNIST not found; looked in .*fashion-mnist\. "
                                        r"Download failed: .*unreachable"):
        fastbp.datasets.load_fashion_mnist()
    shutil.copytree(fake[0], offline / "fastbp" / "fashion-mnist")
    assert len(fastbp.datasets.load_fashion_mnist().test) == 10_000


def test_a_download_is_verified_against_the_published_md5(fake, offline, monkeypatch):
    pooch = pytest.importorskip("pooch")
    served = []

    def serve(url, known_hash, path, fname, progressbar):
        served.append(url)
        shutil.copy(fake[0] / fname, Path(path) / fname)
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", serve)
    # The real checksums: the made-up files do not match and are removed, from every mirror.
    with pytest.raises(DataError, match="checksum mismatch.*removed"):
        fastbp.datasets.load_fashion_mnist()
    assert len(served) == len(sets.FASHION_MNIST.mirrors)
    assert not list((offline / "fastbp" / "fashion-mnist").glob("*.gz"))
    # Checksums that match (those of the made-up files): downloaded into the cache, and read.
    md5 = {p.name[:-3]: hashlib.md5(p.read_bytes()).hexdigest() for p in fake[0].glob("*.gz")}
    monkeypatch.setitem(sets.SETS, "kmnist", dataclasses.replace(sets.KMNIST, md5=md5))
    assert len(fastbp.datasets.load_kmnist().train) == 50_000
    assert sorted(p.name for p in (offline / "fastbp" / "kmnist").iterdir()) == sorted(
        p.name for p in fake[0].glob("*.gz"))


def test_a_set_without_a_published_checksum_is_never_downloaded(offline, monkeypatch):
    monkeypatch.setitem(sets.SETS, "kmnist", dataclasses.replace(sets.KMNIST, md5=None))
    with pytest.raises(DataError, match="no published checksum .* does not download"):
        fastbp.datasets.load_kmnist()


def test_the_data_option_takes_folders_names_and_name_colon_folder(tmp_path):
    assert sets.parse_source(None) == ("mnist", None)
    assert sets.parse_source("kmnist") == ("kmnist", None)
    assert sets.parse_source("fashion-mnist:/x/y") == ("fashion-mnist", "/x/y")
    assert sets.parse_source("nowhere/mnist") == ("mnist", "nowhere/mnist")
    (tmp_path / "kmnist").mkdir()
    assert sets.parse_source(str(tmp_path / "kmnist")) == ("mnist", str(tmp_path / "kmnist"))


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_fastbp_train_on_a_set_by_name(fake, offline, fake_md5, capsys, name):
    shutil.copytree(fake[0], offline / "fastbp" / name)
    assert cli.main(["train", "--data", name, "--epochs", "1", "--limit", "2000", "--seed", "1",
                     "--cost", "cross-entropy", "--eta", "0.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    best = float(out.split("best test accuracy ")[1].split(" %")[0])
    assert best > 90  # the white row gives the class away
    assert cli.main(["train", "--data", f"{name}:{fake[0]}", "--epochs", "1", "--limit", "100",
                     "--seed", "1"]) == 0
    title = sets.title_of(name)
    assert f"on 100 {title} training images" in capsys.readouterr().out
