"""Checks on an ``.npz`` archive before NumPy reads a byte of its data.

``numpy.load`` trusts the archive: a ``.npy`` header claiming a shape of 10¹¹ makes it allocate
that much before it finds the data missing, a member that is not ``.npy`` is read whole into
memory, and zip features it cannot handle (encryption, other compression methods) come out as
``RuntimeError`` or ``NotImplementedError``. :func:`check_npz` reads only the zip directory and
each member's ``.npy`` header and refuses, with :class:`~fastbp.errors.ModelFormatError`:

* members that are not ``.npy`` files, encrypted, or compressed other than stored or deflated;
* sizes the file cannot hold: a stored member larger than its compressed size, a deflated one
  more than ``DEFLATE_MAX_RATIO`` (1032, deflate's limit) times it, or members whose compressed
  sizes add up to more than the file (overlapping entries, the zip-bomb trick);
* a ``.npy`` header whose ``shape × itemsize`` exceeds its member, or with an object dtype.

After it passes, what ``numpy.load`` allocates is bounded by what the members really hold.
:func:`check_members` then bounds them by what they should hold: given the names a model may
have and the bytes each needs (from its declared shapes), a member of another name or larger
than its array is refused from the zip directory, before it is decompressed.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np

from ..errors import ModelFormatError

DEFLATE_MAX_RATIO = 1032
MAX_HEADER = 10_000  # NumPy's own default limit on a .npy header
_FLAG_ENCRYPTED, _FLAG_PATCHED, _FLAG_STRONG = 0x1, 0x20, 0x40

# What zipfile and numpy.lib.format raise on archives they cannot read.
ZIP_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error,
              struct.error, NotImplementedError, RuntimeError, RecursionError)


def check_npz(path: str | os.PathLike, file: BinaryIO | None = None) -> None:
    """Raise :class:`ModelFormatError` unless the archive at ``path`` (read from ``file`` when
    it is open already) is safe to ``numpy.load``."""
    path = Path(path)
    try:
        size = os.fstat(file.fileno()).st_size if file is not None else path.stat().st_size
        with zipfile.ZipFile(file if file is not None else path) as archive:
            infos = archive.infolist()
            packed = sum(info.compress_size for info in infos)
            if packed > size:
                raise ModelFormatError(
                    f"{path}: zip entries claim {packed:,} compressed bytes, more than the "
                    f"{size:,} bytes of the file (overlapping entries)")
            for info in infos:
                _check_member(path, archive, info)
    except ModelFormatError:
        raise
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{path}: truncated or damaged archive ({exc})") from exc


def member_sizes(file: BinaryIO) -> dict[str, int]:
    """``{name: uncompressed bytes}`` of each member, the ``.npy`` suffix dropped, read from
    the zip directory alone (call :func:`check_npz` first)."""
    with zipfile.ZipFile(file) as archive:
        return {info.filename.removesuffix(".npy"): info.file_size for info in archive.infolist()}


def check_members(path: Path, sizes: Mapping[str, int], allowed: Mapping[str, int],
                  declared: str) -> None:
    """:class:`ModelFormatError` for a member (of ``sizes``, from :func:`member_sizes`) whose
    name is not in ``allowed`` or that is larger than the bytes ``allowed`` gives it (its array
    and a ``.npy`` header): refused before it is decompressed. ``declared`` names what the
    limits come from (``"sizes [784, 30, 10]"``)."""
    unknown = sorted(name for name in sizes if name not in allowed)
    if unknown:
        raise ModelFormatError(
            f"{path}: arrays do not match {declared}; unexpected "
            f"{', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''} (refused unread)")
    for name, size in sizes.items():
        if size > allowed[name]:
            raise ModelFormatError(
                f"{path}: member {name!r} holds {size:,} bytes, more than the "
                f"{allowed[name]:,} its shape for {declared} takes (refused unread)")


def _check_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if not name.endswith(".npy"):
        raise ModelFormatError(f"{path}: not a fastbp model (member {name!r} is not a .npy array)")
    if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_PATCHED | _FLAG_STRONG):
        raise ModelFormatError(f"{path}: member {name!r} is encrypted or patched")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise ModelFormatError(f"{path}: stored member {name!r} claims {info.file_size:,} "
                                   f"bytes but holds {info.compress_size:,}")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 64:
            raise ModelFormatError(
                f"{path}: member {name!r} claims {info.file_size:,} bytes from "
                f"{info.compress_size:,} compressed ones, more than deflate can produce")
    else:
        raise ModelFormatError(f"{path}: member {name!r} uses zip compression method "
                               f"{info.compress_type}; fastbp models are stored or deflated")
    fmt = np.lib.format
    with archive.open(info) as member:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(member, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(member, max_header_size=MAX_HEADER)
        else:
            raise ModelFormatError(f"{path}: member {name!r} is .npy format {version}, "
                                   "expected 1.0 or 2.0")
    if dtype.hasobject:
        raise ModelFormatError(
            f"{path}: member {name!r} holds pickled Python objects; fastbp models never do, and "
            "loading them could run arbitrary code, so it is refused")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size:
        raise ModelFormatError(f"{path}: member {name!r} claims shape {shape} of {dtype} "
                               f"({claimed:,} bytes) but holds {info.file_size:,} bytes")
