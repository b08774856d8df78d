"""The IDX file format (MNIST's): a magic number, big-endian dimensions, then the data.

The reader trusts nothing in the header: it checks the magic, the type code and the dimension
count, computes the size the header claims without overflow, and reads (or decompresses) at most
that many bytes, so a lying header or a gzip bomb cannot make it allocate more than the file holds.
A plain file must hold exactly what its header claims; a gzip file can inflate to at most
``GZIP_MAX_RATIO`` times its size (deflate's limit), so a larger claim is refused before reading.
A reader that knows what the file should hold (a data set's shape and type) says so, and a header
that claims anything else is refused before the data is read. Only a regular file is opened (a
FIFO is never waited on), and the data is read into one buffer, never joined from pieces.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from ..files import open_regular

TYPE_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_BYTES = 1 << 32  # 4 GiB: far above any IDX file fastbp reads
GZIP_MAX_RATIO = 1032  # deflate turns one compressed byte into at most ~1032 bytes
_CHUNK = 1 << 16  # a read allocates its full size up front, even when less is left


@dataclass(frozen=True)
class Expected:
    """What an IDX file should hold: its ``shape`` and ``dtype``, and ``what`` it is in words
    (``"MNIST train labels"``), for the message that refuses anything else."""

    shape: tuple[int, ...]
    dtype: str
    what: str


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES,
             expect: Expected | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path``, plain or gzip-compressed (told by its content),
    checked against ``expect`` from its header when given.

    Raises :class:`DataError` for a missing, unreadable, truncated, corrupt or lying file.
    """
    path = Path(path)
    try:
        with open_regular(path) as raw:
            return _load(raw, path, max_bytes, os.fstat(raw.fileno()).st_size, expect)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>", *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Like :func:`read_idx` for the bytes of a file (plain or gzip-compressed)."""
    return _load(io.BytesIO(data), Path(name), max_bytes, len(data))


def _load(raw: BinaryIO, path: Path, max_bytes: int, file_size: int,
          expect: Expected | None = None) -> np.ndarray:
    """Parse ``raw`` (``file_size`` bytes), inflating it first if it starts with gzip's magic."""
    try:
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw) as gz:
                return _parse(gz, path, max_bytes, None, compressed_size=file_size,
                              expect=expect)
        raw.seek(0)
        return _parse(raw, path, max_bytes, file_size, expect=expect)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable IDX file ({exc})") from exc


def _parse(stream: BinaryIO, path: Path, max_bytes: int, file_size: int | None,
           compressed_size: int | None = None, expect: Expected | None = None) -> np.ndarray:
    head = _read_exact(stream, 4, path, "magic number")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: bad magic number {head.hex()} (an IDX file starts 0000)")
    code, ndim = head[2], head[3]
    if code not in TYPE_CODES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    dims = [int(d) for d in np.frombuffer(_read_exact(stream, 4 * ndim, path, "dimensions"),
                                          dtype=">u4")]
    shown = dims if ndim <= 8 else dims[:8] + ["..."]
    dtype = np.dtype(TYPE_CODES[code])
    if expect is not None and tuple(dims) != expect.shape:
        raise DataError(f"{path}: {expect.what} have shape {tuple(shown)}, expected "
                        f"{expect.shape} (from its header; the data was not read)")
    if expect is not None and dtype.newbyteorder("=") != np.dtype(expect.dtype):
        raise DataError(f"{path}: {expect.what} are {expect.dtype} (IDX type 0x08), this file "
                        f"holds {dtype.newbyteorder('=')} (type 0x{code:02x})")
    size = dtype.itemsize * math.prod(dims)  # Python ints: no overflow
    if size > max_bytes:
        raise DataError(f"{path}: header claims dimensions {shown}, more than {max_bytes} bytes")
    header = 4 + 4 * ndim
    if file_size is not None and size > file_size - header:
        raise DataError(f"{path}: truncated: header claims {size} bytes of data, the file holds "
                        f"{file_size - header}")
    if compressed_size is not None and size + header > GZIP_MAX_RATIO * compressed_size:
        raise DataError(f"{path}: header claims {size} bytes of data, more than a gzip file of "
                        f"{compressed_size} bytes can hold (deflate inflates at most "
                        f"{GZIP_MAX_RATIO}:1)")
    body = _read_into(stream, size, path, known=file_size is not None or expect is not None)
    if stream.read(1):
        raise DataError(f"{path}: trailing bytes after the {size} bytes the header declares")
    array = np.frombuffer(body, dtype=dtype)
    if not dtype.isnative:  # big-endian on disk: swap in place, no second copy
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    try:
        return array.reshape(dims)
    except ValueError as exc:  # more dimensions than NumPy supports, or a zero-size monster
        raise DataError(f"{path}: dimensions {shown} do not form an array here ({exc})") from exc


def _read_into(stream: BinaryIO, n: int, path: Path, known: bool) -> bytearray:
    """The ``n`` bytes of data, read into one buffer: allocated whole when ``n`` is known to be
    right (a plain file that holds it, or an expected shape), else grown as the data comes, so a
    gzip file that claims more than it holds never costs the claim."""
    buf = bytearray(n) if known else bytearray()
    view, got = memoryview(buf) if known else None, 0
    while got < n:
        if view is not None:
            k = stream.readinto(view[got:got + _CHUNK])  # type: ignore[attr-defined]
        else:
            part = stream.read(min(_CHUNK, n - got))
            buf += part
            k = len(part)
        if not k:
            raise DataError(f"{path}: truncated while reading the data ({got} of {n} bytes "
                            "present)")
        got += k
    if view is not None:
        view.release()
    return buf


def _read_exact(stream: BinaryIO, n: int, path: Path, what: str) -> bytearray:
    """Exactly ``n`` bytes, read in chunks so a short stream never costs an ``n``-byte buffer."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(_CHUNK, n - got))
        if not part:
            raise DataError(f"{path}: truncated while reading the {what} "
                            f"({got} of {n} bytes present)")
        parts.append(part)
        got += len(part)
    return bytearray().join(parts)
