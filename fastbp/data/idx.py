"""The IDX file format (MNIST's): a magic number, big-endian dimensions, then the data.

The reader trusts nothing in the header: it checks the magic, the type code and the dimension
count, computes the size the header claims without overflow, and reads (or decompresses) at most
that many bytes, so a lying header or a gzip bomb cannot make it allocate more than the file holds.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

TYPE_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_BYTES = 1 << 32  # 4 GiB: far above any IDX file fastbp reads
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed if it ends in ``.gz``)."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if path.suffix == ".gz" or raw.read(2) == b"\x1f\x8b":
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw) as gz:
                    return _parse(gz, path, max_bytes, None)
            raw.seek(0)
            return _parse(raw, path, max_bytes, os.fstat(raw.fileno()).st_size)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{path}: no such file") from exc
        raise DataError(f"{path}: not a readable IDX file ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>", *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Like :func:`read_idx` for the (uncompressed) bytes of a file."""
    return _parse(io.BytesIO(data), Path(name), max_bytes, len(data))


def _parse(stream: io.RawIOBase, path: Path, max_bytes: int, file_size: int | None) -> np.ndarray:
    head = _read_exact(stream, 4, path, "magic number")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: bad magic number {head.hex()} (an IDX file starts 0000)")
    code, ndim = head[2], head[3]
    if code not in TYPE_CODES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    dims = np.frombuffer(_read_exact(stream, 4 * ndim, path, "dimensions"), dtype=">u4")
    dtype = np.dtype(TYPE_CODES[code])
    size = dtype.itemsize
    for d in dims:  # Python ints: no overflow
        size *= int(d)
        if size > max_bytes:
            raise DataError(f"{path}: header claims dimensions {dims.tolist()}, more than "
                            f"{max_bytes} bytes")
    if file_size is not None and size > file_size - 4 - 4 * ndim:
        raise DataError(f"{path}: truncated: header claims {size} bytes of data, the file holds "
                        f"{file_size - 4 - 4 * ndim}")
    body = _read_exact(stream, size, path, "data")
    if stream.read(1):
        raise DataError(f"{path}: trailing bytes after the {size} bytes the header declares")
    return np.frombuffer(body, dtype=dtype).reshape([int(d) for d in dims]).astype(
        dtype.newbyteorder("="))


def _read_exact(stream: io.RawIOBase, n: int, path: Path, what: str) -> bytes:
    """Exactly ``n`` bytes, read in chunks so a short stream never costs an ``n``-byte buffer."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(_CHUNK, n - got))
        if not part:
            raise DataError(f"{path}: truncated while reading the {what} "
                            f"({got} of {n} bytes present)")
        parts.append(part)
        got += len(part)
    return b"".join(parts)
