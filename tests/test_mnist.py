"""MNIST: the IDX reader, the book's split, where the loader looks, and verified downloads.

No test here touches the network: ``pooch.retrieve`` is replaced for every test.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir
from idxfiles import idx_bytes, write_idx

from fastbp import DataError
from fastbp.data import mnist as mnistmod
from fastbp.data import mnist_loader
from fastbp.data.idx import parse_idx, read_idx
from fastbp.datasets import load_mnist

pooch = pytest.importorskip("pooch")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails as it would offline, and is recorded."""
    calls: list[str] = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise ConnectionError(f"network is unreachable (test): {url}")

    monkeypatch.setattr(pooch, "retrieve", offline)
    return calls


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Three empty candidate directories: an explicit path, $FASTBP_DATA and the user cache."""
    explicit, env, cache_home = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv("FASTBP_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return explicit, env, cache_home / "fastbp" / "mnist"


def fill(directory: Path, suffix: str = ".gz", skip: str | None = None) -> Path:
    """Put four (empty) MNIST file names in ``directory``: enough for the search."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem in mnistmod.FILES.values():
        if stem != skip:
            (directory / (stem + suffix)).write_bytes(b"")
    return directory


# -- the IDX reader ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    got = read_idx(write_idx(tmp_path / f"a{suffix}", a))
    assert got.shape == (2, 3, 5)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_idx_gzip_told_by_content(tmp_path):
    a = np.arange(12, dtype=np.uint8)
    path = tmp_path / "labels-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(path), a)


def test_idx_one_dimension_like_the_label_files():
    a = np.array([7, 2, 1, 0, 4], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)


@pytest.mark.parametrize("bad, says", [
    (lambda b: b"\x01" + b[1:], "bad magic number"),
    (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX type code 0x0a"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00\x00", "trailing bytes"),
    (lambda b: b[:7], "truncated while reading the dimensions"),
])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_checks(tmp_path, bad, says, suffix):
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    with pytest.raises(DataError, match=says):
        read_idx(write_idx(tmp_path / f"f{suffix}", bad(good)))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_header_claiming_2_to_the_40_bytes_fails_fast(tmp_path, suffix):
    """A tiny file whose header claims 2^40 bytes: a DataError, and no 1 TiB buffer."""
    path = write_idx(tmp_path / f"liar{suffix}",
                     idx_bytes(np.zeros(16, np.uint8), dims=[1 << 20, 1 << 20]))
    with pytest.raises(DataError, match=r"\[1048576, 1048576\]"):
        read_idx(path)


def test_mnist_shaped_check_refuses_wrong_files(tmp_path):
    """Valid IDX files of the wrong shape are not taken for MNIST."""
    for stem in mnistmod.FILES.values():
        shape = (5, 28, 28) if "images" in stem else (5,)
        write_idx(tmp_path / (stem + ".gz"), np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match=r"expected \((60000|10000), 28, 28\)"):
        load_mnist(tmp_path, download=False)


# -- the book's split --------------------------------------------------------------------------
def test_load_mnist_split(mnist):
    assert [len(s) for s in mnist] == [50_000, 10_000, 10_000]
    for split in mnist:
        assert split.images.shape == (len(split), 784)
        assert split.images.dtype == np.float32
        assert split.images.min() == 0.0 and split.images.max() == 1.0
        assert split.labels.dtype == np.int64
        assert set(np.unique(split.labels)) == set(range(10))
        assert split.X.shape == (784, len(split))
        assert np.shares_memory(split.X, split.images)
    one_hot = mnist.train.one_hot()
    assert one_hot.shape == (10, 50_000)
    np.testing.assert_array_equal(one_hot.argmax(axis=0), mnist.train.labels)
    np.testing.assert_array_equal(one_hot.sum(axis=0), 1.0)


def test_validation_is_the_last_10000_of_the_training_file(mnist):
    d = mnist_dir()
    raw_images = read_idx(d / "train-images-idx3-ubyte.gz")
    raw_labels = read_idx(d / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(mnist.validation.labels, raw_labels[50_000:])
    np.testing.assert_array_equal(mnist.train.labels, raw_labels[:50_000])
    np.testing.assert_allclose(mnist.validation.images[-1], raw_images[-1].reshape(-1) / 255.0,
                               rtol=1e-6)


def test_load_mnist_float64(mnist):
    data = load_mnist(mnist_dir(), dtype="float64", download=False)
    assert data.test.images.dtype == np.float64
    np.testing.assert_allclose(data.test.images, mnist.test.images, atol=1e-7)


def test_the_shipped_checksums_match_the_files(mnist):
    for stem in mnistmod.FILES.values():
        raw = gzip.decompress((mnist_dir() / (stem + ".gz")).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == mnistmod.SHA256[stem]
        mnistmod.verify(mnist_dir() / (stem + ".gz"), stem)


# -- the book's mnist_loader -------------------------------------------------------------------
def test_load_data_wrapper_gives_the_books_format(mnist):
    training, validation, test = mnist_loader.load_data_wrapper(str(mnist_dir()))
    assert (len(training), len(validation), len(test)) == (50_000, 10_000, 10_000)
    x, y = training[0]
    assert x.shape == (784, 1) and x.dtype == np.float32
    assert y.shape == (10, 1) and y.sum() == 1.0 and int(y.argmax()) == mnist.train.labels[0]
    np.testing.assert_array_equal(x[:, 0], mnist.train.images[0])
    for part, split in ((validation, mnist.validation), (test, mnist.test)):
        x, label = part[-1]
        assert x.shape == (784, 1)
        assert isinstance(label, int) and label == split.labels[-1]


def test_load_data_gives_image_label_tuples(mnist):
    tr, va, te = mnist_loader.load_data(str(mnist_dir()))
    assert tr[0].shape == (50_000, 784) and tr[1].shape == (50_000,)
    assert va[0].shape == (10_000, 784) and te[0].shape == (10_000, 784)


# -- where the loader looks --------------------------------------------------------------------
def test_explicit_path_comes_first(places):
    explicit, env, cache = places
    for d in places:
        fill(d)
    assert mnistmod.locate(explicit)["train_images"].parent == explicit


def test_fastbp_data_comes_before_the_cache(places):
    _, env, cache = places
    fill(env)
    fill(cache)
    assert mnistmod.locate()["test_labels"].parent == env


def test_the_user_cache_is_used_last(places, monkeypatch, no_network):
    explicit, env, cache = places
    fill(cache, suffix="")  # plain, uncompressed files are found too
    fill(env, skip="t10k-labels-idx1-ubyte")  # without a path: the search order goes on
    found = mnistmod.locate()
    assert found["train_labels"] == cache / "train-labels-idx1-ubyte"
    assert no_network == []


def test_a_given_folder_is_used_as_given_never_passed_over(places, no_network):
    """An explicit path that lacks a file is an error naming it: no silent fallback to another
    folder (or to a download)."""
    explicit, env, cache = places
    fill(cache)
    fill(explicit, skip="t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"explicit: MNIST is incomplete here: missing "
                                        r"t10k-labels-idx1-ubyte \(as NAME.gz or NAME\)"):
        mnistmod.locate(explicit)
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        mnistmod.locate(explicit.parent / "nowhere")
    assert no_network == []


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mnistmod.cache_dir() == tmp_path / ".cache" / "fastbp" / "mnist"


def test_candidate_dirs_order(places, monkeypatch):
    explicit, env, cache = places
    assert mnistmod.candidate_dirs(explicit) == [explicit]
    assert mnistmod.candidate_dirs() == [env, cache]
    monkeypatch.delenv("FASTBP_DATA")
    assert mnistmod.candidate_dirs() == [cache]


def test_absent_and_offline_says_where_it_looked(places, no_network):
    explicit, env, cache = places
    with pytest.raises(DataError) as info:
        load_mnist()
    msg = str(info.value)
    for d in (env, cache):
        assert str(d) in msg
    assert "FASTBP_DATA" in msg and "network is unreachable" in msg
    assert no_network and all(u.startswith(mnistmod.MIRRORS) for u in no_network)
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == []


def test_absent_without_download(places, no_network):
    with pytest.raises(DataError, match="looked in .*downloading was turned off.*FASTBP_DATA"):
        load_mnist(download=False)
    assert no_network == []


# -- verified downloads ------------------------------------------------------------------------
FAKE = {stem: idx_bytes(np.full((3, 2, 2) if "images" in stem else (3,), i, np.uint8))
        for i, stem in enumerate(mnistmod.FILES.values())}


@pytest.fixture
def fake_checksums(monkeypatch):
    """The loader's checksums, for tiny stand-in files."""
    digests = {s: hashlib.sha256(b).hexdigest() for s, b in FAKE.items()}
    monkeypatch.setattr(mnistmod, "SHA256", digests)


def serve(monkeypatch, content_for):
    """Replace ``pooch.retrieve`` by one that writes ``content_for(url)`` where pooch would."""
    calls: list[str] = []

    def retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, **kw):
        calls.append(url)
        out = Path(path) / fname
        out.write_bytes(content_for(url))
        return str(out)

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    return calls


def stem_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gz")


def test_a_wrong_download_is_removed_and_reported(tmp_path, monkeypatch, fake_checksums):
    calls = serve(monkeypatch, lambda url: gzip.compress(b"not the file you are looking for"))
    with pytest.raises(DataError) as info:
        mnistmod.fetch(tmp_path)
    msg = str(info.value)
    assert "checksum mismatch" in msg and "removed" in msg
    assert all(mnistmod._host(m) in msg for m in mnistmod.MIRRORS)  # every mirror was tried
    assert len(calls) == len(mnistmod.MIRRORS)
    assert [p for p in tmp_path.rglob("*")] == []  # nothing kept, not even a temporary


def test_a_wrong_download_is_never_used(places, monkeypatch, fake_checksums):
    serve(monkeypatch, lambda url: gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist()
    assert not places[2].exists() or not any(places[2].iterdir())


def test_a_right_download_moves_into_the_cache(places, monkeypatch, fake_checksums):
    calls = serve(monkeypatch, lambda url: gzip.compress(FAKE[stem_of(url)]))
    cache = places[2]
    found = mnistmod.locate()
    assert {p.parent for p in found.values()} == {cache}
    names = sorted(s + ".gz" for s in mnistmod.FILES.values())
    assert sorted(p.name for p in cache.iterdir()) == names
    assert len(calls) == 4 and all(u.startswith(mnistmod.MIRRORS[0]) for u in calls)
    np.testing.assert_array_equal(read_idx(found["train_labels"]), np.full(3, 1, np.uint8))
    assert mnistmod.locate() == found  # the second time it is in the cache: no download
    assert len(calls) == 4


def test_a_bad_first_mirror_falls_back_to_the_next(tmp_path, monkeypatch, fake_checksums):
    def content(url):
        if url.startswith(mnistmod.MIRRORS[0]):
            return b"garbage"
        return gzip.compress(FAKE[stem_of(url)])

    calls = serve(monkeypatch, content)
    found = mnistmod.fetch(tmp_path)
    assert len(calls) == 8
    for key, path in found.items():
        mnistmod.verify(path, mnistmod.FILES[key])
