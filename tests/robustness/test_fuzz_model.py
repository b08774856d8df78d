"""The model loader under fuzzing: every file loads a finite network of the saved shapes or raises
``ModelFormatError``, within 1 s, allocating no more than the file's content allows.

The allocation bound for ``fastbp.load`` is ``8 × file size + 256 KiB``: the arrays read (1×),
the ``Network`` they go into (its own random draw in float64 is 2× a float32 file), the finite
checks, and the zip reader's fixed buffers; plus ``64 ×`` the JSON metadata, which Python's
``json`` turns into objects up to ~50 times its size (nested ``{}``). Deflated members count at
what they inflate to.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastbp
from fastbp.errors import ModelFormatError
from fastbp.io.checkpoint import _TOP_KEYS

from ._support import FUZZ, TIME_LIMIT_S, measured

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast")

SLACK = 256 * 1024
SIZES = [6, 5, 3]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def saved(workdir: Path) -> dict[str, bytes]:
    """A saved model's members (``name.npy`` -> bytes) after two epochs of training."""
    net = fastbp.Network(SIZES, seed=4)
    rng = np.random.default_rng(0)
    net.train(rng.random((SIZES[0], 40)), rng.integers(0, SIZES[-1], 40), epochs=2,
              batch_size=8, eta=0.5)
    path = net.save(workdir / "base.npz")
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def npz(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def npy(a: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, a, allow_pickle=a.dtype.hasobject)
    return out.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A ``.npy`` 1.0 header claiming ``shape``, with no data behind it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def metadata(members: dict[str, bytes]) -> dict:
    return json.loads(np.load(io.BytesIO(members["metadata.npy"])).tobytes().decode())


def with_metadata(members: dict[str, bytes], meta: object) -> dict[str, bytes]:
    raw = json.dumps(meta).encode() if not isinstance(meta, bytes) else meta
    return {**members, "metadata.npy": npy(np.frombuffer(raw, dtype=np.uint8))}


def inflated(data: bytes) -> tuple[int, int]:
    """What a zip's members really hold (deflated ones inflated, at most 1032× the file), in all
    and in ``metadata.npy``."""
    total, meta = 0, 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                size = info.compress_size
                if info.compress_type == zipfile.ZIP_DEFLATED:
                    start = (info.header_offset + 30 + len(info.filename.encode())
                             + len(info.extra))
                    size = len(zlib.decompressobj(-15).decompress(
                        data[start:start + info.compress_size], 1032 * len(data)))
                total += size
                meta += size if info.filename == "metadata.npy" else 0
    except Exception:  # noqa: BLE001 - an unreadable zip holds what the file holds
        pass
    return max(total, len(data)), min(meta, len(data) * 1032)


def load_or_error(workdir: Path, data: bytes, name: str = "fuzz.npz"):
    """``fastbp.load`` of ``data``, checking the time and allocation budget whatever the outcome."""
    path = workdir / name
    path.write_bytes(data)
    with measured() as cost:
        try:
            result = fastbp.load(path)
        except ModelFormatError as exc:
            result = exc
    assert cost.cpu < TIME_LIMIT_S, f"took {cost.cpu:.2f} s of CPU ({cost.seconds:.2f} s wall)"
    total, meta = inflated(data)
    limit = 8 * total + 64 * meta + SLACK
    assert cost.peak <= limit, f"allocated {cost.peak} bytes for a {len(data)}-byte file"
    if isinstance(result, fastbp.Network):
        assert all(np.isfinite(p).all() for p in [*result.weights, *result.biases])
        assert [w.shape for w in result.weights] == [
            (n, k) for k, n in zip(result.sizes[:-1], result.sizes[1:])]
    return result


# -- arbitrary bytes and damaged files ---------------------------------------------------------
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(workdir: Path, data: bytes) -> None:
    for prefix in (b"", b"PK\x03\x04"):
        assert isinstance(load_or_error(workdir, prefix + data), ModelFormatError)


@FUZZ
@given(st.data())
def test_flipped_and_truncated_models(workdir: Path, saved: dict[str, bytes],
                                      data: st.DataObject) -> None:
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    buf = bytearray(npz(saved, method))
    for _ in range(data.draw(st.integers(0, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    load_or_error(workdir, bytes(buf))


def test_the_unchanged_model_loads(workdir: Path, saved: dict[str, bytes]) -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        net = load_or_error(workdir, npz(saved, method))
        assert isinstance(net, fastbp.Network) and net.sizes == SIZES and len(net.history) == 2


# -- lying metadata ----------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
plausible = {
    "format": st.sampled_from(["fastbp-model", "fastbp", ""]),
    "format_version": st.sampled_from([0, 1, 2, -1, True, 1.0, "1"]),
    "sizes": st.one_of(st.lists(st.integers(-1, 7), max_size=4), st.just([6, 5, 3]),
                       st.just([6, 5, 2**40])),
    "cost": st.sampled_from(["quadratic", "cross-entropy", "hinge", 3, None]),
    "dtype": st.sampled_from(["float32", "float64", "float16", "int8", "object", ""]),
    "init": st.sampled_from(["standard", "scaled", "xavier", None]),
    "epoch": st.sampled_from([0, 1, 2, 3, -1, 2.0, True, 2**70]),
}


@FUZZ
@given(st.data())
def test_lying_metadata(workdir: Path, saved: dict[str, bytes], data: st.DataObject) -> None:
    meta = metadata(saved)
    for key in data.draw(st.lists(st.sampled_from(_TOP_KEYS + ("rng.state", "history.0")),
                                  min_size=1, max_size=3, unique=True)):
        how = data.draw(st.sampled_from(["delete", "random", "plausible"]))
        if key == "rng.state":
            if isinstance(meta.get("rng"), dict):
                meta["rng"]["state"] = data.draw(json_values)
        elif key == "history.0":
            if isinstance(meta.get("history"), list) and meta["history"]:
                meta["history"][0] = data.draw(json_values)
        elif how == "delete":
            meta.pop(key, None)
        elif how == "plausible" and key in plausible:
            meta[key] = data.draw(plausible[key])
        else:
            meta[key] = data.draw(json_values)
    load_or_error(workdir, npz(with_metadata(saved, meta)))


@pytest.mark.parametrize("raw", [
    b"", b"\xff\xfe", b"[]", b"null", b'"fastbp-model"', b"{" * 100_000,
    b'{"format": "fastbp-model", "format_version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000
    + b"}",
])
def test_broken_metadata_json(workdir: Path, saved: dict[str, bytes], raw: bytes) -> None:
    assert isinstance(load_or_error(workdir, npz(with_metadata(saved, raw))), ModelFormatError)


def test_deeply_nested_random_state(workdir: Path, saved: dict[str, bytes]) -> None:
    meta = metadata(saved)
    state = node = {"bit_generator": "PCG64"}
    for _ in range(900):
        node["state"] = {}
        node = node["state"]
    meta["rng"] = state
    result = load_or_error(workdir, npz(with_metadata(saved, meta)))
    assert isinstance(result, ModelFormatError) and "random state" in str(result)


# -- lying arrays ------------------------------------------------------------------------------
arrays = st.one_of(
    st.builds(lambda shape, dtype, fill: np.full(shape, fill, dtype=dtype),
              st.lists(st.integers(0, 6), max_size=3).map(tuple),
              st.sampled_from(["float32", "float64", "float16", "int32", "uint8", "bool"]),
              st.sampled_from([0.0, 1.0, np.nan, np.inf])),
    st.just(np.array([{"a": 1}], dtype=object)),
    st.just(np.zeros(4, dtype=[("x", "<f4"), ("y", "<i2")])),
)


@FUZZ
@given(st.data())
def test_lying_arrays(workdir: Path, saved: dict[str, bytes], data: st.DataObject) -> None:
    members = dict(saved)
    name = data.draw(st.sampled_from(sorted(members) + ["weights_9.npy", "extra.npy"]))
    choice = data.draw(st.sampled_from(["array", "drop", "header-only", "junk"]))
    if choice == "array":
        members[name] = npy(data.draw(arrays))
    elif choice == "drop":
        members.pop(name, None)
    elif choice == "header-only":
        shape = tuple(data.draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=3)))
        members[name] = npy_header(shape) + data.draw(st.binary(max_size=64))
    else:
        members[name] = data.draw(st.binary(max_size=256))
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    load_or_error(workdir, npz(members, method))


def test_object_arrays_are_refused_without_unpickling(workdir: Path, saved) -> None:
    members = {**saved, "weights_0.npy": npy(np.array([object()] * 30, dtype=object))}
    result = load_or_error(workdir, npz(members))
    assert isinstance(result, ModelFormatError) and "pickled" in str(result)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("shape", [(10**11,), (2**40, 2**40), (60_000, 784)])
def test_npy_header_claiming_more_than_the_member(workdir: Path, saved, method, shape) -> None:
    """NumPy would allocate the claimed shape before finding the data missing."""
    members = {**saved, "weights_0.npy": npy_header(shape) + b"\0" * 100}
    result = load_or_error(workdir, npz(members, method))
    assert isinstance(result, ModelFormatError) and "claims shape" in str(result)


def test_zip_bomb_member(workdir: Path, saved) -> None:
    """50 MB of zeros deflated to ~50 kB in an extra member: refused before it is inflated."""
    members = {**saved, "junk.bin": b"\0" * 50_000_000}
    result = load_or_error(workdir, npz(members, zipfile.ZIP_DEFLATED))
    assert isinstance(result, ModelFormatError) and "not a .npy array" in str(result)


def test_deflated_member_claiming_more_than_deflate_can_give(workdir: Path, saved) -> None:
    data = bytearray(npz(saved, zipfile.ZIP_DEFLATED))
    cd = data.find(b"PK\x01\x02")  # first central directory entry: uncompressed size at +24
    data[cd + 24: cd + 28] = struct.pack("<I", 2**32 - 1)
    result = load_or_error(workdir, bytes(data))
    assert isinstance(result, ModelFormatError) and "more than deflate" in str(result)


def overlapping_zip(payload: bytes, copies: int) -> bytes:
    """One stored member, and ``copies`` directory entries all pointing at it (a zip bomb)."""
    crc = zlib.crc32(payload)
    name = b"weights_0.npy"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(payload),
                        len(payload), len(name), 0) + name + payload
    central = b""
    for i in range(copies):
        entry = f"weights_{i}.npy".encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc,
                               len(payload), len(payload), len(entry), 0, 0, 0, 0, 0, 0) + entry
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, copies, copies, len(central), len(local), 0)
    return local + central + end


def test_overlapping_entries(workdir: Path) -> None:
    result = load_or_error(workdir, overlapping_zip(npy(np.zeros((5, 6), "float32")), 200))
    assert isinstance(result, ModelFormatError) and "overlapping" in str(result)


@pytest.mark.parametrize("flag,method,match", [
    (0x1, zipfile.ZIP_STORED, "encrypted"),
    (0x0, 99, "compression method 99"),
    (0x0, zipfile.ZIP_BZIP2, "compression method 12"),
])
def test_zip_features_numpy_cannot_read(workdir: Path, saved, flag, method, match) -> None:
    data = bytearray(npz(saved))
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = data.find(sig)
        while at >= 0:
            data[at + flag_at] |= flag
            data[at + method_at: at + method_at + 2] = struct.pack("<H", method)
            at = data.find(sig, at + 4)
    result = load_or_error(workdir, bytes(data))
    assert isinstance(result, ModelFormatError) and match in str(result)


def test_a_directory_and_a_missing_file(workdir: Path) -> None:
    for path in (workdir, workdir / "missing.npz"):
        with pytest.raises(ModelFormatError):
            fastbp.load(path)
