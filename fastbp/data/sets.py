"""More data in MNIST's format: Fashion-MNIST and KMNIST (Kuzushiji-MNIST), 28 × 28 grey images
in ten classes, 60,000 for training and 10,000 for testing, in the same four IDX files.

They are read by the same IDX reader and split as the book splits MNIST (50,000 training, the
last 10,000 of the training file for validation, 10,000 test). Where: ``path`` when given, used
as given; else the user cache (``~/.cache/fastbp/NAME``, or under ``$XDG_CACHE_HOME``), else a
download from the set's public mirrors into the cache. A download is checked against the
published MD5 of each compressed file before it is used; a file that does not match is deleted
and reported. Files found in the cache are checked the same way (once per process): one that does
not match (another set's file copied there) is refused, naming it. :func:`load` takes a set's
name (``mnist``, ``fashion-mnist``, ``kmnist``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DataError
from ..files import open_regular
from . import folders, mnist


@dataclass(frozen=True)
class DataSet:
    """A data set in MNIST's four IDX files: its ``name`` (as ``load`` and ``--data`` take it),
    ``title``, the published MD5 of each ``.gz`` file (``None``: not known, no download) and
    the mirrors to download from."""

    name: str
    title: str
    md5: dict[str, str] | None
    mirrors: tuple[str, ...]
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))


# The MD5s and mirrors are those published with each set, as torchvision lists them
# (pytorch/vision, torchvision/datasets/mnist.py: FashionMNIST.resources and .mirrors,
# KMNIST.resources and .mirrors); the Fashion-MNIST files are also served from the
# zalandoresearch/fashion-mnist repository's data/fashion folder.
FASHION_MNIST = DataSet(
    name="fashion-mnist", title="Fashion-MNIST",
    md5={"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
    mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
             "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"))
KMNIST = DataSet(
    name="kmnist", title="KMNIST",
    md5={"train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
         "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
         "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
         "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134"},
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"))
SETS = {s.name: s for s in (FASHION_MNIST, KMNIST)}
NAMES = ("mnist", *SETS)
ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "kuzushiji-mnist": "kmnist"}


def canonical(name: str) -> str | None:
    """The set's name for ``name`` (case and ``_`` ignored, a few aliases), or ``None``."""
    key = name.lower().replace("_", "-")
    key = ALIASES.get(key, key)
    return key if key in NAMES else None


def cache_dir(spec: DataSet) -> Path:
    """``~/.cache/fastbp/NAME`` (``$XDG_CACHE_HOME/fastbp/NAME`` when that is set)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastbp" / spec.name


def md5_check(spec: DataSet) -> Callable[[Path, str], None]:
    """``check(path, stem)`` for :func:`fastbp.data.mnist.fetch`: ``DataError`` unless the
    ``.gz`` file has the published MD5 (an uncompressed file cannot be checked: refused)."""
    def check(path: Path, stem: str) -> None:
        if path.suffix != ".gz":
            raise DataError(f"{path}: cannot be verified (the published MD5 is that of "
                            f"{stem}.gz)")
        h = hashlib.md5(usedforsecurity=False)
        try:
            with open_regular(path) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc})") from exc
        want = (spec.md5 or {})[stem]
        if h.hexdigest() != want:
            raise DataError(f"{path}: checksum mismatch (md5 {h.hexdigest()}, expected {want})")
    return check


def locate(spec: DataSet, path: str | os.PathLike | None = None, *,
           download: bool = True) -> dict[str, Path]:
    """The four files of ``spec``: in ``path`` as given, else in the cache, downloaded into
    it (verified) if need be."""
    if path is not None:
        return folders.find_in_given(Path(path), mnist.FILES, title=spec.title)
    cache = cache_dir(spec)
    folders.check_cache(cache, spec.title, f"pass --data {spec.name}:DIR")
    found = folders.find(cache, mnist.FILES)
    if found:
        return found
    if not download:
        reason = "downloading was turned off"
    elif spec.md5 is None:
        reason = (f"fastbp knows no published checksum of {spec.title}'s files, so it does not "
                  "download them")
    else:
        try:
            return mnist.fetch(cache, spec.mirrors, title=spec.title, check=md5_check(spec))
        except DataError as exc:
            reason = str(exc)
    raise DataError(
        f"{spec.title} not found; looked in {cache}. Download failed: {reason}. Put the four "
        f"IDX files (gzip or plain) in a folder and pass --data {spec.name}:DIR (in Python: "
        f"load({spec.name!r}, DIR))")


def load(name: str, path: str | os.PathLike | None = None, *, dtype: str = "float32",
         download: bool = True) -> mnist.MNIST:
    """The data set ``name`` (``mnist``, ``fashion-mnist`` or ``kmnist``) split as the book
    splits MNIST: 50,000 training, 10,000 validation, 10,000 test images in [0, 1]."""
    from ..core.ops import check_dtype

    key = canonical(name) if isinstance(name, str) else None
    if key is None:
        raise ConfigError(f"unknown data set {name!r}; fastbp knows {', '.join(NAMES)}")
    if key == "mnist":
        return mnist.load_mnist(path, dtype=dtype, download=download)
    dtype = check_dtype(dtype)
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
        raise ConfigError(f"path must be a folder (a non-empty str or os.PathLike), got {path!r}")
    spec = SETS[key]
    files = locate(spec, path, download=download)
    if path is None and spec.md5 is not None:  # fastbp's cache: only verified files
        mnist.verify_cached(files, md5_check(spec), spec.title,
                            f"pass --data {spec.name}:DIR to use the files of another folder")
    return mnist.book_split(files, dtype, spec.title)


def load_fashion_mnist(path: str | os.PathLike | None = None, *, dtype: str = "float32",
                       download: bool = True) -> mnist.MNIST:
    """Fashion-MNIST (Zalando's clothes), split as :func:`load` says."""
    return load("fashion-mnist", path, dtype=dtype, download=download)


def load_kmnist(path: str | os.PathLike | None = None, *, dtype: str = "float32",
                download: bool = True) -> mnist.MNIST:
    """KMNIST (Kuzushiji-MNIST, cursive Japanese characters), split as :func:`load` says."""
    return load("kmnist", path, dtype=dtype, download=download)


def parse_source(text: str | None) -> tuple[str, str | None]:
    """``--data``'s value as ``(set name, folder or None)``: an existing folder is an MNIST
    folder (as always), ``NAME`` a set (its cache, or a download), ``NAME:DIR`` a set's folder,
    anything else an MNIST folder (an error names what is wrong with it)."""
    if text is None:
        return "mnist", None
    if text and not Path(text).is_dir():
        head, sep, tail = text.partition(":")
        if canonical(text):
            return canonical(text) or "mnist", None
        if sep and canonical(head) and tail:
            return canonical(head) or "mnist", tail
    return "mnist", text


def title_of(name: str) -> str:
    """``MNIST``, ``Fashion-MNIST``, ``KMNIST``."""
    return SETS[name].title if name in SETS else "MNIST"
