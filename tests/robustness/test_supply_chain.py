"""Supply chain: downloads are verified before use and moved into the cache atomically; a file that
does not match its SHA-256 is removed and reported, never used, and a download cut short by a
crash is never picked up. ``pooch.retrieve`` is replaced: no network."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import struct
from pathlib import Path

import pytest
from conftest import mnist_dir

from fastbp.data import mnist
from fastbp.errors import DataError

pooch = pytest.importorskip("pooch")

def fake_idx(stem: str) -> bytes:
    """A small, valid IDX file standing in for ``stem``."""
    payload = stem.encode()
    return b"\0\0\x08\x01" + struct.pack(">I", len(payload)) + payload


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache, no ``$FASTBP_DATA``, and checksums of the fake files."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    sums = {stem: hashlib.sha256(fake_idx(stem)).hexdigest() for stem in mnist.FILES.values()}
    monkeypatch.setattr(mnist, "SHA256", sums)
    return mnist.cache_dir()


class Mirrors:
    """``pooch.retrieve`` for tests: each mirror serves good, tampered, corrupt or no files."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **behaviour: str) -> None:
        self.behaviour = behaviour  # mirror host -> "good" | "tampered" | "corrupt" | "down"
        self.served: list[Path] = []
        self.stale: list[bool] = []  # at each call: was an earlier download still in place?
        monkeypatch.setattr(pooch, "retrieve", self.retrieve)

    def retrieve(self, url: str, known_hash=None, path=None, fname=None, progressbar=False):
        self.stale.append((Path(path) / fname).exists())
        host = url.split("/")[2].split(".")[0]
        what = self.behaviour[host]
        if what == "down":
            raise ConnectionError(f"{host} is unreachable")
        stem = fname[: -len(".gz")]
        body = gzip.compress(fake_idx(stem), mtime=0)
        if what == "tampered":
            body = gzip.compress(fake_idx(stem).replace(b"idx", b"IDX"), mtime=0)
        elif what == "corrupt":
            body = body[:-12]
        out = Path(path) / fname
        out.write_bytes(body)
        self.served.append(out)
        return str(out)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_verified_files_are_moved_into_the_cache(cache: Path, monkeypatch) -> None:
    Mirrors(monkeypatch, **{"ossci-datasets": "good", "storage": "good"})
    found = mnist.locate()
    assert set(found) == set(mnist.FILES)
    for key, stem in mnist.FILES.items():
        assert found[key] == cache / f"{stem}.gz"
        mnist.verify(found[key], stem)
    assert leftovers(cache) == []


@pytest.mark.parametrize("bad", ["tampered", "corrupt"])
def test_a_bad_mirror_is_removed_reported_and_the_next_one_used(cache, monkeypatch, bad) -> None:
    mirrors = Mirrors(monkeypatch, **{"ossci-datasets": bad, "storage": "good"})
    found = mnist.fetch(cache)
    for key, stem in mnist.FILES.items():
        mnist.verify(found[key], stem)
    assert len(mirrors.served) == 8 and not any(mirrors.stale)  # each bad one removed first
    assert leftovers(cache) == []


@pytest.mark.parametrize("bad", ["tampered", "corrupt"])
def test_no_good_mirror_means_data_error_and_an_empty_cache(cache, monkeypatch, bad) -> None:
    mirrors = Mirrors(monkeypatch, **{"ossci-datasets": bad, "storage": bad})
    with pytest.raises(DataError) as info:
        mnist.fetch(cache)
    msg = str(info.value)
    expected = "checksum mismatch" if bad == "tampered" else "cannot be read"
    assert msg.count(expected) == 2 and msg.count("(removed)") == 2
    assert "ossci-datasets" in msg and "storage.googleapis" in msg
    assert not cache.exists()  # nothing kept, nothing half-written, no empty folder
    assert all(not p.exists() for p in mirrors.served)
    with pytest.raises(DataError, match="MNIST not found.*checksum|MNIST not found.*cannot be"):
        mnist.locate()


def test_mirrors_down(cache, monkeypatch) -> None:
    Mirrors(monkeypatch, **{"ossci-datasets": "down", "storage": "down"})
    with pytest.raises(DataError, match="unreachable.*unreachable"):
        mnist.locate()
    visible = [p for p in cache.iterdir() if not p.name.startswith(".")] if cache.exists() else []
    assert visible == []


def test_download_turned_off_never_touches_the_network(cache, monkeypatch) -> None:
    mirrors = Mirrors(monkeypatch, **{"ossci-datasets": "good", "storage": "good"})
    with pytest.raises(DataError, match="downloading was turned off"):
        mnist.locate(download=False)
    assert mirrors.served == []


def test_an_interrupted_download_leaves_nothing(cache, monkeypatch) -> None:
    def interrupted(url, known_hash=None, path=None, fname=None, progressbar=False):
        (Path(path) / fname).write_bytes(b"\x1f\x8b\x08\0partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch, "retrieve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mnist.fetch(cache)
    assert not cache.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_download_killed_midway_is_never_picked_up(cache, monkeypatch) -> None:
    """SIGKILL while the second file downloads: its partial copy stays in a hidden scratch
    directory, the cache never has all four files, and the next fetch completes them."""
    mirrors = Mirrors(monkeypatch, **{"ossci-datasets": "good", "storage": "good"})
    real = mirrors.retrieve

    def dies_on_second_file(url, known_hash=None, path=None, fname=None, progressbar=False):
        if "labels" in fname and "train" in fname:
            (Path(path) / fname).write_bytes(gzip.compress(fake_idx("x" * 64))[:20])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(url, known_hash, path, fname, progressbar)

    monkeypatch.setattr(pooch, "retrieve", dies_on_second_file)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies inside fetch
        try:
            mnist.fetch(cache)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    visible = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert visible == ["train-images-idx3-ubyte.gz"]  # the verified first file only
    scratch = [p for p in cache.iterdir() if p.name.startswith(".download-")]
    assert scratch and any(p.is_file() for d in scratch for p in d.iterdir())  # the partial
    assert mnist._find(cache) is None
    with pytest.raises(DataError, match="MNIST not found"):
        mnist.locate(download=False)
    monkeypatch.setattr(pooch, "retrieve", real)
    found = mnist.locate()  # downloads the three missing files, verified
    for key, stem in mnist.FILES.items():
        mnist.verify(found[key], stem)
        assert found[key].parent == cache


def test_the_checksum_table_matches_real_mnist() -> None:
    real = mnist_dir()  # $FASTBP_DATA, else ../shared/data/mnist beside the checkout
    if real is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    for stem in ("t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"):
        mnist.verify(real / f"{stem}.gz", stem)
