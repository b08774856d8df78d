"""The IDX reader under fuzzing: every input loads correctly or raises ``DataError``, within 1 s,
allocating no more than the file's real content allows (tracemalloc peak).

The allocation bound is ``3 × real bytes + 256 KiB``: the data read in chunks and joined (2×),
plus the fixed buffers of the gzip reader. "Real bytes" is the file's length, or for gzip what it
actually inflates to, never what its header claims.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir
from hypothesis import example, given
from hypothesis import strategies as st

from fastbp.data.idx import GZIP_MAX_RATIO, TYPE_CODES, parse_idx, read_idx
from fastbp.errors import DataError

from ._support import FUZZ, TIME_LIMIT_S, measured

SLACK = 256 * 1024
MNIST = mnist_dir()  # $FASTBP_DATA, else ../shared/data/mnist beside the checkout; or None


def numpy_max_dims() -> int:
    """The most dimensions an ndarray may have here (32 in NumPy 1, 64 in NumPy 2)."""
    n = 1
    while n < 256:
        try:
            np.empty((1,) * (n + 1))
        except ValueError:
            return n
        n += 1
    return n


MAX_DIMS = numpy_max_dims()


def header(code: int, dims: list[int], magic: bytes = b"\0\0") -> bytes:
    return magic + bytes([code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def inflated_size(data: bytes, cap: int) -> int:
    """How many bytes ``data`` inflates to (every gzip member, stopping at ``cap`` or an error)."""
    total = 0
    while data[:2] == b"\x1f\x8b" and total < cap:
        d = zlib.decompressobj(wbits=31)
        try:
            while data and not d.eof and total < cap:
                total += len(d.decompress(data, 1 << 16))
                data = d.unconsumed_tail
        except zlib.error:
            break
        data = d.unused_data
    return total


def real_bytes(data: bytes) -> int:
    if data[:2] == b"\x1f\x8b":
        return inflated_size(data, GZIP_MAX_RATIO * len(data))
    return len(data)


def load_or_error(data: bytes) -> np.ndarray | DataError:
    """``parse_idx(data)``, checking the time and allocation budget whatever the outcome."""
    with measured() as cost:
        try:
            result: np.ndarray | DataError = parse_idx(data)
        except DataError as exc:
            result = exc
    assert cost.cpu < TIME_LIMIT_S, f"took {cost.cpu:.2f} s of CPU ({cost.seconds:.2f} s wall)"
    limit = 3 * real_bytes(data) + SLACK
    assert cost.peak <= limit, f"allocated {cost.peak} bytes for {len(data)} bytes of input"
    return result


# -- arbitrary bytes --------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_load_or_raise_data_error(data: bytes) -> None:
    load_or_error(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_after_a_valid_prefix(tail: bytes) -> None:
    """Bytes behind a believable header: the header's claims must be checked against the rest."""
    for prefix in (b"\0\0\x08\x03", b"\0\0\x08\x01", b"\x1f\x8b"):
        load_or_error(prefix + tail)


# -- structured headers -----------------------------------------------------------------------
big_dims = st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1),
                     st.sampled_from([2**31, 2**32 - 1, 2**16, 60_000]))


@st.composite
def idx_files(draw: st.DrawFn) -> tuple[bytes, np.ndarray | None]:
    """An IDX file and the array it holds (``None`` when the file is invalid)."""
    code = draw(st.one_of(st.sampled_from(sorted(TYPE_CODES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 4), st.integers(0, 255)))
    small = draw(st.booleans())
    dims = draw(st.lists(st.integers(0, 5) if small else big_dims, min_size=ndim, max_size=ndim))
    magic = draw(st.sampled_from([b"\0\0", b"\0\0", b"\0\0", b"\x00\x01", b"\xff\xff"]))
    data = header(code, dims, magic)
    expected = None
    valid = magic == b"\0\0" and code in TYPE_CODES and 1 <= ndim <= MAX_DIMS
    n = int(np.prod(dims, dtype=object)) if dims else 0
    if valid and n <= 4096:
        dtype = np.dtype(TYPE_CODES[code])
        values = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
        cut = draw(st.sampled_from(["exact", "exact", "short", "long"]))
        if cut == "short" and values:
            values = values[: draw(st.integers(0, len(values) - 1))]
        elif cut == "long":
            values += draw(st.binary(min_size=1, max_size=16))
        else:
            expected = np.frombuffer(values, dtype=dtype).astype(dtype.newbyteorder("="))
            try:
                expected = expected.reshape(dims)
            except ValueError:  # e.g. (0, 2**32 - 1, 2**32 - 1): zero-size yet too big for NumPy
                expected = None
        data += values
    else:
        data += draw(st.binary(max_size=64))
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    return data, expected


@FUZZ
@given(idx_files())
def test_structured_headers(case: tuple[bytes, np.ndarray | None]) -> None:
    data, expected = case
    result = load_or_error(data)
    if expected is None:
        assert isinstance(result, DataError)
    else:
        assert isinstance(result, np.ndarray), result
        assert result.dtype.isnative and result.flags.writeable
        np.testing.assert_array_equal(result, expected)


@FUZZ
@given(idx_files(), st.data())
def test_corrupted_files(case: tuple[bytes, np.ndarray | None], data: st.DataObject) -> None:
    """Flip or drop bytes anywhere (gzip header, deflate stream, CRC): load or ``DataError``."""
    raw, _ = case
    if not raw:
        return
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    result = load_or_error(bytes(buf))
    if isinstance(result, np.ndarray):  # a flip the format cannot see (e.g. the gzip mtime)
        assert result.nbytes <= real_bytes(bytes(buf))


# Skipped before hypothesis runs: a skip raised inside it reads "Failing explicit example".
@pytest.mark.skipif(MNIST is None,
                    reason="MNIST not found: set FASTBP_DATA to the directory of the IDX files")
@FUZZ
@given(st.integers(0, 4095), st.integers(1, 255))
@example(cut=74, flip=2)  # the header then claims 589,833 labels: reads must not ask for them all
def test_real_mnist_labels_truncated_or_flipped(cut: int, flip: int) -> None:
    raw = (MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()
    load_or_error(raw[: cut % len(raw)])
    flipped = bytearray(raw)
    flipped[cut % len(raw)] ^= flip
    load_or_error(bytes(flipped))


# -- dimension counts and products ------------------------------------------------------------
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 32, 33, 64, 65, 200, 255])
def test_every_dimension_count(ndim: int) -> None:
    """Dimension counts 0–255 with dimensions of 1 and one byte of data: only NumPy's limit."""
    result = load_or_error(header(0x08, [1] * ndim) + b"\x07")
    if ndim == 0:
        assert isinstance(result, DataError) and "0 dimensions" in str(result)
    elif ndim <= MAX_DIMS:
        assert isinstance(result, np.ndarray) and result.shape == (1,) * ndim
        assert result.reshape(-1)[0] == 7
    else:
        assert isinstance(result, DataError) and "do not form an array" in str(result)


@pytest.mark.parametrize("dims", [
    [2**32 - 1, 2**32 - 1, 2**32 - 1],          # product overflows 64 bits
    [2**16, 2**16, 2**16, 2**16],               # exactly 2^64
    [0, 2**32 - 1, 2**32 - 1, 2**32 - 1],       # zero-size, but too big for NumPy
    [60_000, 28, 28],                           # MNIST's claim, with no data behind it
    [2**31],
])
def test_lying_dimensions(dims: list[int]) -> None:
    for code in (0x08, 0x0E):
        for data in (header(code, dims), header(code, dims) + b"\0" * 1000):
            result = load_or_error(data)
            assert isinstance(result, DataError)
            result = load_or_error(gzip.compress(data))
            assert isinstance(result, DataError)


def test_header_claims_more_than_max_bytes() -> None:
    with pytest.raises(DataError, match="more than 100 bytes"):
        parse_idx(header(0x08, [101]) + b"\0" * 101, max_bytes=100)


@pytest.mark.parametrize("code", [0x00, 0x01, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(code: int) -> None:
    with pytest.raises(DataError, match=f"type code 0x{code:02x}"):
        parse_idx(header(code, [1]) + b"\0" * 8)


def test_wrong_magic() -> None:
    with pytest.raises(DataError, match="bad magic number 0108"):
        parse_idx(b"\x01\x08\x08\x01\0\0\0\x01\0")


# -- gzip bombs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bomb_payload() -> bytes:
    """A gzip stream (~100 KB) of 100 MiB of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join([c.compress(zeros) for _ in range(100)] + [c.flush()])


def test_gzip_bomb_inflating_past_its_header(bomb_payload: bytes) -> None:
    """A header claiming 16 bytes in front of 100 MiB of zeros: stops after 17 bytes of data."""
    prefix = gzip.compress(header(0x08, [4, 4]), mtime=0)
    with measured() as cost, pytest.raises(DataError, match="trailing bytes"):
        parse_idx(prefix + bomb_payload)  # two gzip members: the header, then the bomb
    assert cost.cpu < TIME_LIMIT_S and cost.peak < 4 * SLACK


def test_gzip_bomb_behind_a_huge_header(bomb_payload: bytes) -> None:
    """A header claiming 4 GiB: refused before inflating, as ~100 KB cannot hold it."""
    prefix = gzip.compress(header(0x08, [2**16, 2**16 - 1]), mtime=0)
    with measured() as cost, pytest.raises(DataError, match="gzip file of"):
        parse_idx(prefix + bomb_payload)
    assert cost.cpu < TIME_LIMIT_S and cost.peak < 4 * SLACK


def test_gzip_claiming_more_than_it_inflates_to() -> None:
    """A header claiming 60 MB that deflate could hold, with only 1 MiB (random) behind it."""
    noise = np.random.default_rng(0).bytes(1 << 20)
    data = gzip.compress(header(0x08, [60_000, 1000]) + noise, mtime=0)
    assert GZIP_MAX_RATIO * len(data) > 60_000_000
    with measured() as cost, pytest.raises(DataError, match="truncated"):
        parse_idx(data)
    assert cost.cpu < TIME_LIMIT_S and cost.peak <= 3 * (1 << 20) + SLACK


# -- files on disk -------------------------------------------------------------------------------
def test_read_idx_files(tmp_path: Path) -> None:
    good = header(0x0C, [2, 3]) + np.arange(6, dtype=">i4").tobytes()
    (tmp_path / "a.idx").write_bytes(good)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(good))
    (tmp_path / "plain-named.gz").write_bytes(good)  # the content decides, not the name
    for name in ("a.idx", "a.idx.gz", "plain-named.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), np.arange(6).reshape(2, 3))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-9])
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    for name, match in [("cut.gz", "not a readable IDX file"), ("empty", "truncated"),
                        ("dir", "it is a directory; fastbp reads only regular files"),
                        ("missing", "no such file")]:
        with pytest.raises(DataError, match=match):
            read_idx(tmp_path / name)


def test_read_idx_refuses_lying_header_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "liar"
    path.write_bytes(header(0x0E, [60_000, 28, 28]) + b"\0" * 64)
    with measured() as cost, pytest.raises(DataError, match="truncated: header claims"):
        read_idx(path)
    assert cost.peak < SLACK
