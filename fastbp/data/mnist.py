"""MNIST: find the four IDX files, verify and read them, and split them as the book does.

Where: ``path`` when given, used as given (a folder that does not hold the four files is an error
naming the missing ones, never passed over). Without a path, the search order: ``$FASTBP_DATA``,
then the user cache (``~/.cache/fastbp/mnist``, or ``$XDG_CACHE_HOME/fastbp/mnist``), then a
download from public mirrors into the cache. Downloads
are checked against the SHA-256 of the uncompressed files before use and moved into the cache
atomically; a file that does not match is deleted and reported. Files found in the cache are
checked too (once per process): a file that does not match is refused, naming it. Each file is
read only as far as MNIST's known shapes (a header claiming anything else is refused unread).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import DataError
from ..files import open_regular
from . import folders
from .idx import Expected, read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the uncompressed files (their MD5s are the well-known 6bbc9ace..., a25bea73...,
# 2646ac64..., 27ae3e4e...).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
EXPECTED = {"train": (60_000, 28, 28), "test": (10_000, 28, 28)}
N_VALIDATION = 10_000


@dataclass(frozen=True)
class Split:
    """One part of the data: ``images`` ``(N, 784)`` in [0, 1], integer ``labels`` ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def X(self) -> np.ndarray:
        """The images as ``(784, N)``, one sample per column (a view, no copy)."""
        return self.images.T

    def one_hot(self, n: int = 10) -> np.ndarray:
        """The labels as one-hot columns ``(n, N)``."""
        y = np.zeros((n, len(self.labels)), dtype=self.images.dtype)
        y[self.labels, np.arange(len(self.labels))] = 1.0
        return y

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[np.ndarray]:  # unpacks as the book's (images, labels)
        return iter((self.images, self.labels))


@dataclass(frozen=True)
class MNIST:
    """The book's split: 50,000 training, 10,000 validation, 10,000 test images."""

    train: Split
    validation: Split
    test: Split

    def __iter__(self) -> Iterator[Split]:
        return iter((self.train, self.validation, self.test))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastbp" / "mnist"


def candidate_dirs(path: str | os.PathLike | None = None) -> list[Path]:
    """Where the loader looks: ``path`` alone, else ``$FASTBP_DATA`` then the cache."""
    if path is not None:
        return [Path(path)]
    env = os.environ.get("FASTBP_DATA")
    return [Path(env), cache_dir()] if env else [cache_dir()]


def _find(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory``, or None if one is missing."""
    return folders.find(directory, FILES)


def locate(path: str | os.PathLike | None = None, *, download: bool = True) -> dict[str, Path]:
    """The paths of the four files: in ``path`` as given, else in ``$FASTBP_DATA`` or the
    cache, downloaded into the cache if need be."""
    if path is not None:
        return folders.find_in_given(Path(path), FILES)
    dirs = candidate_dirs()
    for d in dirs:
        found = _find(d)
        if found:
            return found
    folders.check_cache(cache_dir(), "MNIST", "pass --data DIR")
    if download:
        try:
            return fetch(cache_dir())
        except DataError as exc:
            reason = str(exc)
    else:
        reason = "downloading was turned off"
    raise DataError(
        "MNIST not found; looked in " + ", ".join(str(d) for d in dirs)
        + f". Download failed: {reason}. Put the four IDX files (gzip or plain) in a folder and "
        "pass --data DIR, or set FASTBP_DATA=DIR (in Python: load_mnist(DIR))"
    )


def sha256_uncompressed(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open_regular(path) as raw, (gzip.GzipFile(fileobj=raw) if path.suffix == ".gz"
                                         else raw) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    return h.hexdigest()


def verify(path: Path, stem: str) -> None:
    """Raise ``DataError`` unless ``path`` holds the known bytes of ``stem``."""
    digest = sha256_uncompressed(path)
    if digest != SHA256[stem]:
        raise DataError(f"{path}: checksum mismatch (sha256 {digest}, expected {SHA256[stem]})")


def fetch(target: Path, mirrors: tuple[str, ...] = MIRRORS, *, title: str = "MNIST",
          check: Callable[[Path, str], None] | None = None) -> dict[str, Path]:
    """Download the four files into ``target``, each checked by ``check(path, stem)`` (default
    :func:`verify`) and moved in atomically."""
    check = check or verify
    try:
        import pooch
    except ImportError as exc:
        raise DataError(f"pooch is needed to download {title}: pip install pooch") from exc
    created = []  # the folders made here, removed again if they stay empty
    folder = target
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{target}: cannot make the {title} cache folder "
                        f"({exc.strerror or exc})") from exc
    out = {}
    if not all((target / (stem + ".gz")).is_file() for stem in FILES.values()):
        print(f"fastbp: downloading {title} into {target}", file=sys.stderr, flush=True)
    try:
        for key, stem in FILES.items():
            final = target / (stem + ".gz")
            if not final.is_file():
                _download_one(pooch, stem, final, mirrors, check)
            out[key] = final
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
        raise
    return out


def _host(url: str) -> str:
    """``https://host/path/`` → ``host``."""
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def _short(exc: BaseException) -> str:
    """One short line for a download error: the OS's reason where there is one."""
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno [^\]]+\] [^'\")(]+", text)
    if errno:
        text = errno.group(0).strip()
    return f"{type(exc).__name__}: {text[:120]}" + ("..." if len(text) > 120 else "")


def _download_one(pooch, stem: str, final: Path, mirrors: tuple[str, ...],
                  check: Callable[[Path, str], None] = verify) -> None:
    errors: list[str] = []
    logger = pooch.get_logger()  # its "Downloading data from ..." lines, one per try
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=".download-") as tmp:
            for mirror in mirrors:
                try:
                    got = Path(pooch.retrieve(mirror + stem + ".gz", known_hash=None, path=tmp,
                                              fname=stem + ".gz", progressbar=_has_tqdm()))
                except Exception as exc:  # noqa: BLE001 - network errors come in many types
                    errors.append(f"{_host(mirror)}: {_short(exc)}")
                    continue
                try:
                    check(got, stem)
                except DataError as exc:
                    got.unlink(missing_ok=True)
                    why = re.sub(r"([0-9a-f]{8})[0-9a-f]{24,56}", r"\1...",  # short digests
                                 str(exc).removeprefix(f"{got}: "))
                    errors.append(f"{_host(mirror)}: {why} (removed)")
                    continue
                with open(got, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(got, final)
                return
    finally:
        logger.setLevel(level)
    raise DataError(f"could not download {stem}.gz: " + "; ".join(errors))


def _has_tqdm() -> bool:
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None


@functools.lru_cache(maxsize=4)
def _read_raw(files: tuple[tuple[str, Path], ...], title: str = "MNIST") -> dict[str, np.ndarray]:
    """The four files, each checked against its known shape from its header (so the file that
    is wrong is the one named, and nothing larger than the set is read)."""
    f = dict(files)
    raw = {}
    for key, path in f.items():
        part, content = key.split("_")  # "train_images": the train part's images
        shape = EXPECTED[part] if content == "images" else EXPECTED[part][:1]
        raw[key] = read_idx(path, expect=Expected(shape, "uint8", f"{title} {part} {content}"))
    for part in ("train", "test"):
        labels = raw[f"{part}_labels"]
        if labels.max() > 9:
            raise DataError(f"{f[part + '_labels']}: not {title} {part} labels (a label of "
                            f"{labels.max()}, outside 0..9)")
    return raw


_verified: set[tuple[object, ...]] = set()


def verify_cached(files: dict[str, Path], check: Callable[[Path, str], None], title: str,
                  source: str) -> None:
    """``DataError`` naming the file, unless each of ``files`` (found in fastbp's cache) passes
    ``check(path, stem)`` (its published checksum); ``source`` says how to use other files. A
    file that passed is not hashed again in this process until it changes."""
    for key, path in files.items():
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        memo = (title, str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if memo in _verified:
            continue
        try:
            check(path, FILES[key])
        except DataError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            raise DataError(f"{path}: not {title}'s {FILES[key]} ({reason}); the cache holds only "
                            f"verified files: delete it to download it again, or {source}") \
                from exc
        _verified.add(memo)


def load_mnist(path: str | os.PathLike | None = None, *, dtype: str = "float32",
               download: bool = True) -> MNIST:
    """MNIST as the book splits it: the first 50,000 training images, the last 10,000 of the
    training file as validation, and the 10,000 test images; pixels scaled to [0, 1]."""
    from ..core.ops import check_dtype
    from ..errors import ConfigError

    dtype = check_dtype(dtype)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"path must be a directory (str or os.PathLike), got {path!r}")
    if path is not None and not os.fspath(path):
        raise ConfigError("the MNIST folder is an empty string; give a folder, or None to use "
                          "FASTBP_DATA or the cache")
    files = locate(path, download=download)
    if path is None and all(p.parent == cache_dir() for p in files.values()):
        verify_cached(files, verify, "MNIST", "pass --data DIR to use the files of another folder")
    return book_split(files, dtype)


def book_split(files: dict[str, Path], dtype: str, title: str = "MNIST") -> MNIST:
    """The four IDX ``files`` read, checked and split as the book splits MNIST, as ``dtype``."""
    raw = _read_raw(tuple(sorted((k, Path(os.path.abspath(p))) for k, p in files.items())), title)

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        x = images.reshape(len(images), -1).astype(dtype)
        x /= 255.0
        return Split(x, labels.astype(np.int64))

    n_train = EXPECTED["train"][0] - N_VALIDATION
    ti, tl = raw["train_images"], raw["train_labels"]
    return MNIST(
        train=split(ti[:n_train], tl[:n_train]),
        validation=split(ti[n_train:], tl[n_train:]),
        test=split(raw["test_images"], raw["test_labels"]),
    )
