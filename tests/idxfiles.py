"""Writing small IDX files (MNIST's format) for the reader's tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype(">i2"): 0x0B,
         np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(a: np.ndarray, *, dims: list[int] | None = None, code: int | None = None,
              magic: bytes = b"\x00\x00") -> bytes:
    """The IDX encoding of ``a``; ``dims``, ``code`` and ``magic`` override the header (to lie)."""
    a = np.asarray(a)
    big = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a
    code = CODES[big.dtype] if code is None else code
    dims = list(a.shape) if dims is None else dims
    header = magic + bytes([code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + big.tobytes()


def write_idx(path: Path, a: np.ndarray | bytes, **header) -> Path:
    """Write ``a`` (an array, or raw bytes as they are) to ``path``; gzip if it ends in .gz."""
    data = a if isinstance(a, bytes) else idx_bytes(a, **header)
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path
