"""Reading a model: only a regular file, never waited on (a FIFO, with or without a suffix, by
``fastbp.load``, ``fastbp evaluate`` and ``--resume``), and never more than it should hold (a
network2 JSON file within what its network takes, an ``.npz`` member of another name or larger
than its declared shape refused before it is decompressed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from nonregular import link_to_dev_zero, make_fifo, needs_dev_zero, needs_fifo, returns_within

import fastbp
from fastbp.errors import ModelFormatError
from fastbp.io import network2

SIZES = [12, 9, 10]


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def with_member(model: Path, out: Path, name: str, data: bytes) -> Path:
    """``model`` with member ``name`` added (or replaced), deflated."""
    with zipfile.ZipFile(model) as z:
        content = {n: z.read(n) for n in z.namelist()}
    content[name] = data
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in content.items():
            z.writestr(n, d)
    return out


def peak_while(call) -> tuple[object, int]:
    """What ``call()`` returns or raises, and the peak bytes Python allocated meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except ModelFormatError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@needs_fifo
@pytest.mark.parametrize("name", ["model", "model.npz", "model.json"])
def test_a_fifo_as_a_model_is_refused_at_once(tmp_path, name):
    fifo = make_fifo(tmp_path / name)
    error = returns_within(10, lambda: fastbp.load(fifo), fifo=fifo)
    assert isinstance(error, ModelFormatError)
    assert str(error) == f"{fifo}: it is a FIFO (named pipe); fastbp reads only regular files"


def fastbp_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastbp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@needs_fifo
def test_evaluate_and_resume_of_a_fifo_end_in_one_line(tmp_path):
    fifo = make_fifo(tmp_path / "model.npz")
    for args in (["evaluate", str(fifo)], ["train", "--resume", str(fifo), "--epochs", "1"]):
        try:
            out = fastbp_cli(*args, cwd=tmp_path)
        except subprocess.TimeoutExpired:
            pytest.fail(f"fastbp {' '.join(args)} waits on the FIFO")
        assert out.returncode == 2, out.stderr
        assert "it is a FIFO (named pipe); fastbp reads only regular files" in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@needs_dev_zero
@pytest.mark.parametrize("name", ["zero.json", "zero"])
def test_a_link_to_dev_zero_as_a_model_is_refused_unread(tmp_path, name):
    path = link_to_dev_zero(tmp_path / name)
    error = returns_within(10, lambda: fastbp.load(path))
    assert isinstance(error, ModelFormatError)
    assert "it is a character device" in str(error)


def test_a_network2_file_larger_than_its_sizes_take_is_refused_unread(tmp_path):
    net = fastbp.Network([2, 1], dtype="float64")
    good = net.save(tmp_path / "good.json", format="network2")
    assert fastbp.load(good).sizes == [2, 1]
    big = tmp_path / "big.json"
    big.write_bytes(good.read_bytes()[:-1] + b" " * 100_000 + b"}")
    cap = 3 * network2.NUMBER_BYTES + network2.SLACK
    with pytest.raises(ModelFormatError) as info:
        fastbp.load(big)
    assert str(info.value) == (
        f"{big}: 100,{len(good.read_bytes()):03d} bytes, more than what its sizes [2, 1] take "
        f"at {network2.NUMBER_BYTES} bytes a number ({cap:,} bytes); it is refused unread")


def test_a_network2_file_beyond_the_parameter_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(network2, "MAX_PARAMETERS", 100)
    monkeypatch.setattr(network2, "MAX_BYTES", 100 * network2.NUMBER_BYTES + network2.SLACK)
    odd = tmp_path / "odd.json"  # sizes last: the general cap holds
    odd.write_text(json.dumps({"cost": "QuadraticCost", "weights": [], "biases": [],
                               "sizes": [2, 1]}) + " " * network2.MAX_BYTES)
    with pytest.raises(ModelFormatError, match=r"more than the most a network2.py model of 100 "
                                               r"parameters takes at 48 bytes a number"):
        fastbp.load(odd)
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"sizes": [100, 100], "weights": [], "biases": [],
                                "cost": "QuadraticCost"}))
    with pytest.raises(ModelFormatError, match=r"sizes \[100, 100\] hold 10,100 parameters, "
                                               r"more than the 100 fastbp reads"):
        fastbp.load(many)


def test_an_unexpected_member_is_refused_before_it_is_decompressed(tmp_path):
    model = fastbp.Network(SIZES).save(tmp_path / "m.npz")
    bad = with_member(model, tmp_path / "bad.npz", "extra.npy",
                      npy(np.zeros(40_000_000, np.uint8)))
    assert bad.stat().st_size < 1_000_000
    error, peak = peak_while(lambda: fastbp.load(bad))
    assert isinstance(error, ModelFormatError)
    assert str(error) == (f"{bad}: arrays do not match sizes {SIZES}; unexpected extra "
                          "(refused unread)")
    assert peak < 4_000_000


def test_an_oversized_member_is_refused_before_it_is_decompressed(tmp_path):
    model = fastbp.Network(SIZES).save(tmp_path / "m.npz")
    huge = npy(np.zeros((9, 1_000_000), np.float32))
    bad = with_member(model, tmp_path / "bad.npz", "weights_0.npy", huge)
    error, peak = peak_while(lambda: fastbp.load(bad))
    assert isinstance(error, ModelFormatError)
    allowed = 9 * 12 * 8 + 10_000 + 128  # its shape in float64, and a .npy header
    assert str(error) == (f"{bad}: member 'weights_0' holds {len(huge):,} bytes, more than the "
                          f"{allowed:,} its shape for sizes {SIZES} takes (refused unread)")
    assert peak < 4_000_000


def test_models_still_load_with_and_without_velocities(tmp_path):
    net = fastbp.Network(SIZES, seed=1)
    rng = np.random.default_rng(0)
    X, y = rng.random((12, 40)), rng.integers(0, 10, 40)
    net.train(X, y, epochs=1, batch_size=10, eta=0.5, momentum=0.5)
    back = fastbp.load(net.save(tmp_path / "v.npz"))
    assert back.velocities is not None and len(back.velocities) == 4
    assert fastbp.load(fastbp.Network(SIZES).save(tmp_path / "p.npz")).sizes == SIZES
