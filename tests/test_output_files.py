"""Pictures and benchmark results are written as models are saved: only a regular file, never
into a FIFO or a device at the path, atomically; the files ``--plot`` and ``bench --out`` will
write are checked before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nonregular import make_fifo, needs_fifo, returns_within

import fastbp
from fastbp.errors import SaveError
from fastbp.io import targets

pytest.importorskip("matplotlib")
from fastbp.bench import report  # noqa: E402
from fastbp.io import plots  # noqa: E402

HISTORY = [fastbp.EpochRecord(epoch=i, cost=1.0 / (i + 1), accuracy=0.5 + i / 10, correct=None,
                              seconds=1.0, samples_per_s=1e5) for i in range(3)]


@needs_fifo
def test_a_picture_is_never_written_into_a_fifo(tmp_path):
    fifo = make_fifo(tmp_path / "learning_curve.png")
    error = returns_within(20, lambda: plots.learning_curves(HISTORY, fifo), fifo=fifo)
    assert isinstance(error, SaveError)
    assert "it is a FIFO (named pipe); fastbp writes only regular files" in str(error)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_picture_through_a_link_to_a_device_is_refused(tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null here")
    (tmp_path / "curve.png").symlink_to("/dev/null")
    with pytest.raises(SaveError, match="a character device"):
        plots.learning_curves(HISTORY, tmp_path / "curve.png")


def test_a_picture_replaces_a_regular_file_atomically(tmp_path):
    path = tmp_path / "curve.png"
    path.write_bytes(b"old")
    assert plots.learning_curves(HISTORY, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_bench_results_are_written_as_regular_files_only(tmp_path):
    (tmp_path / "table.md").mkdir()
    with pytest.raises(SaveError, match="table.md: it is a directory"):
        targets.write_file(tmp_path / "table.md", b"x")
    doc = {"benchmarks": [], "machine_info": {"fastbp": {"cpu": {"model": "test"}}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bench.json").write_text(json.dumps(doc))
    (tmp_path / "run" / "machine.json").mkdir()
    with pytest.raises(SaveError, match="machine.json: it is a directory"):
        report.write_companions(tmp_path / "run" / "bench.json")


@pytest.mark.parametrize("names, label", [(plots.PICTURES, "--plot"),
                                          (("bench.json", "chart.png"), "--out")])
def test_output_folders_check_the_files_they_will_write(tmp_path, names, label):
    (tmp_path / names[-1]).mkdir()
    with pytest.raises(SaveError) as info:
        targets.check_folder(tmp_path, f"{label} {tmp_path}", names)
    assert str(info.value) == (f"{label} {tmp_path}: {tmp_path / names[-1]}: it is a directory; "
                               "fastbp writes only regular files and never replaces anything "
                               "else: give a file name inside it")


@needs_fifo
def test_evaluate_plot_refuses_a_fifo_among_its_pictures_before_any_work(tmp_path):
    model = fastbp.Network([784, 10, 10]).save(tmp_path / "m.npz")
    out = tmp_path / "pictures"
    out.mkdir()
    make_fifo(out / "confusion.png")
    try:
        run = subprocess.run([sys.executable, "-m", "fastbp", "evaluate", str(model), "--plot",
                              str(out)], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env=dict(os.environ, FASTBP_DATA=str(tmp_path)))
    except subprocess.TimeoutExpired:
        pytest.fail("fastbp evaluate --plot waits on the FIFO")
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"fastbp: error: --plot {out}: {out / 'confusion.png'}: it is a FIFO (named pipe); "
        "fastbp writes only regular files and never replaces anything else: give another path"]
