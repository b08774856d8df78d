"""``fastbp train`` never loses a finished epoch: the size check counts what the file will hold,
a ``.json`` save keeps the state the book's format cannot, and a run stopped by a divergence,
Ctrl-C or SIGTERM saves its last finished epoch; options read back on ``--resume`` are checked as
the command line checks them. On real MNIST (skipped without it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp import cli
from fastbp.devices import registry as devices
from fastbp.io import targets

QUICK = ["--limit", "500", "--seed", "3", "--device", "cpu"]


def train(*args):
    return cli.main(["train", *QUICK, *args])


def arrays(net):
    return [np.asarray(a) for a in (*net.weights, *net.biases, *(net.velocities or ()))]


def _rewrite(path, change):
    with np.load(path) as z:
        content = {k: z[k] for k in z.files}
    meta = json.loads(content["metadata"].tobytes())
    change(meta)
    content["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **content)


def _cli(*args, limit=None, **kw):
    """``python -m fastbp ARGS`` in a child, with a file-size limit (``ulimit -f``) if given."""
    def preexec():
        if limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.Popen([sys.executable, "-u", "-m", "fastbp", *args], preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# -- the size check --------------------------------------------------------------------------
def test_the_size_estimate_holds_the_velocities_and_the_json_text(tmp_path):
    for sizes in ([784, 30, 10], [20, 7, 3]):
        net = fastbp.Network(sizes, seed=0, device="cpu", cost="cross-entropy")
        rng = np.random.default_rng(0)
        net.train(rng.random((sizes[0], 40)), rng.integers(0, sizes[-1], 40), epochs=2,
                  batch_size=10, eta=0.1, momentum=0.5)
        net.save(tmp_path / "m.npz")
        net.save(tmp_path / "m.json", format="network2")
        size = os.path.getsize(tmp_path / "m.npz")
        assert size <= targets.model_bytes(sizes, "float32", 2, velocities=True)
        assert size > targets.model_bytes(sizes, "float32", 2) - 16384  # the parameters twice
        assert os.path.getsize(tmp_path / "m.json") <= targets.json_bytes(sizes)


@pytest.mark.parametrize("name, extra, limit", [
    ("m.npz", ["--momentum", "0.5"], 150_000),  # 1 copy ~112 kB fits, 2 copies ~207 kB do not
    ("m.json", ["--cost", "cross-entropy"], 300_000),  # its JSON text is ~530 kB
])
def test_a_file_size_limit_the_save_would_hit_is_refused_before_training(
        data_dir, tmp_path, name, extra, limit):
    child = _cli("train", *QUICK, "--epochs", "1", *extra, "--save", str(tmp_path / name),
                 limit=limit)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 2, err
    assert "file-size limit (ulimit -f)" in err and "Epoch 0" not in out
    assert "Traceback" not in err


# -- a .json save keeps what network2.py's file cannot ----------------------------------------
def test_a_json_save_resumes_bit_for_bit_from_its_state_file(data_dir, tmp_path, capsys):
    run = ["--momentum", "0.5", "--cost", "cross-entropy", "--eta", "0.5", "--quiet"]
    assert train(*run, "--epochs", "2", "--save", str(tmp_path / "m.json")) == 0
    assert (tmp_path / "m.fastbp.npz").is_file()
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "m.json"), "--epochs", "4",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"with its training state from {tmp_path / 'm.fastbp.npz'}: epoch 2" in out
    assert "momentum velocities" in out
    assert train(*run, "--epochs", "4", "--save", str(tmp_path / "straight.npz")) == 0
    resumed = fastbp.load(tmp_path / "m.fastbp.npz")
    straight = fastbp.load(tmp_path / "straight.npz")
    assert len(resumed.history) == 4 and resumed.dtype == "float32"
    assert all(np.array_equal(a, b) for a, b in zip(arrays(resumed), arrays(straight)))
    book = fastbp.load(tmp_path / "m.json")  # the book's file holds the same weights
    assert all(np.array_equal(a, np.asarray(b, np.float64))
               for a, b in zip(book.weights, resumed.weights))


def test_a_json_without_its_state_file_says_what_starts_afresh(data_dir, tmp_path, capsys):
    assert train("--cost", "cross-entropy", "--epochs", "1", "--quiet", "--save",
                 str(tmp_path / "m.json")) == 0
    (tmp_path / "m.fastbp.npz").unlink()
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "m.json"), "--epochs", "1",
                     "--limit", "100", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming from its weights and biases alone" in out
    assert "random state, history, velocities and training options start afresh" in out


def test_a_json_changed_after_its_state_file_is_refused(data_dir, tmp_path, capsys):
    assert train("--cost", "cross-entropy", "--epochs", "1", "--quiet", "--save",
                 str(tmp_path / "m.json")) == 0
    doc = json.loads((tmp_path / "m.json").read_text())
    doc["biases"][0][0][0] += 1.0
    (tmp_path / "m.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(tmp_path / "m.json"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "its weights differ from those in" in err and "delete" in err


# -- a stopped run keeps its finished epochs ---------------------------------------------------
class DivergesInEpoch2(fastbp.NumpyBackend):
    """The CPU backend, except that its third epoch writes a NaN into ``W^2``."""

    name = "diverge-2"

    def __init__(self, dtype: str = "float32", index: int = 0) -> None:
        super().__init__(dtype=dtype, index=index)
        self.epochs = 0

    def sgd_epoch(self, plan):  # type: ignore[override]
        cost = super().sgd_epoch(plan)
        self.epochs += 1
        if self.epochs == 3:
            plan.params.weights[0][0, 0] = np.nan
        return cost


@pytest.fixture
def diverging():
    fastbp.register_backend("diverge-2", DivergesInEpoch2)
    yield "diverge-2"
    devices._registered.pop("diverge-2", None)


def test_a_run_that_diverges_after_good_epochs_saves_the_last_good_one(
        data_dir, tmp_path, capsys, diverging):
    path = tmp_path / "m.npz"
    status = cli.main(["train", "--limit", "500", "--seed", "3", "--device", diverging,
                       "--epochs", "5", "--l1", "0.5", "--save", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"Saved epoch 1, the last finished one, in {path} (2 epochs)." in err
    assert "--eta (it is 3)" in err and "--l1 (it is 0.5)" in err and "on_diverge" not in err
    kept = fastbp.load(path)
    assert len(kept.history) == 2 and all(np.isfinite(a).all() for a in arrays(kept))


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_saves_its_last_finished_epoch(data_dir, tmp_path, sig, status):
    path = tmp_path / "m.npz"
    child = _cli("train", "--limit", "10000", "--seed", "3", "--device", "cpu", "--epochs",
                 "1000", "--momentum", "0.5", "--save", str(path))
    try:
        for line in child.stdout:
            if line.startswith("Epoch 1:"):
                break
        child.send_signal(sig)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == status, err
    assert "Traceback" not in err and f"the last finished one, in {path}" in err
    kept = fastbp.load(path)
    assert len(kept.history) >= 2 and kept.velocities is not None


# -- saved options are checked as the command line checks them --------------------------------
@pytest.mark.parametrize("section, key, value", [
    ("train", "expand", "no"), ("train", "schedule", [0, 3]), ("train", "schedule", "10,7"),
    ("train", "momentum", 1.5), ("train", "dropout", -0.1), ("train", "l1", "big"),
    ("schedule", "eta", -3), ("schedule", "halved", "two"), ("schedule", "etas", [1, None]),
])
def test_saved_options_of_the_wrong_value_are_refused_on_resume(
        data_dir, tmp_path, capsys, section, key, value):
    path = tmp_path / "m.npz"
    assert train("--epochs", "1", "--schedule", "2,2", "--quiet", "--save", str(path)) == 0
    _rewrite(path, lambda meta: meta["extra"].setdefault(section, {}).__setitem__(key, value))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(path), "--epochs", "3"]) == 2
    out, err = capsys.readouterr()
    assert f'extra["{section}"]["{key}"] is' in err and "Epoch" not in out
    assert len(fastbp.load(path).history) == 1  # the file is left as it was


def test_an_error_found_after_an_epoch_keeps_the_finished_epochs(
        data_dir, tmp_path, capsys, monkeypatch):
    from fastbp.cli.session import Session

    def refuse(self, record, net):  # e.g. a saved state that only an epoch's end reads
        if record.epoch == 1:
            raise fastbp.ConfigError("a bad value found after epoch 1")

    monkeypatch.setattr(Session, "_checkpoint", refuse)
    path = tmp_path / "m.npz"
    assert train("--epochs", "4", "--save", str(path)) == 2
    err = capsys.readouterr().err
    assert f"stopped by an error: saved epoch 1, the last finished one, in {path}" in err
    assert "a bad value found after epoch 1" in err and len(fastbp.load(path).history) == 2


def _stop_after_epoch_1(monkeypatch, before=lambda: None):
    from fastbp.cli.session import Session

    def stop(self, record, net):
        if record.epoch == 1:
            before()
            raise KeyboardInterrupt

    monkeypatch.setattr(Session, "_checkpoint", stop)


def test_an_interrupted_run_without_save_says_nothing_is_kept(data_dir, capsys, monkeypatch):
    _stop_after_epoch_1(monkeypatch)
    assert train("--epochs", "4") == 130
    err = capsys.readouterr().err
    assert "interrupted: epoch 1, the last finished one, is not kept (no --save PATH" in err


def test_an_interrupted_run_whose_path_fails_keeps_a_rescue_file(
        data_dir, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "out").mkdir()
    _stop_after_epoch_1(monkeypatch, lambda: shutil.rmtree(tmp_path / "out"))
    assert train("--epochs", "4", "--save", str(tmp_path / "out" / "m.npz")) == 130
    err = capsys.readouterr().err
    assert "the last finished one, is kept at" in err
    (kept,) = (tmp_path / "cache" / "fastbp" / "rescued").glob("m-*.npz")
    assert str(kept) in err and len(fastbp.load(kept).history) == 2
