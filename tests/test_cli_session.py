"""``fastbp train`` with --save, --checkpoint-every, --resume, --plot, --quiet, --patience and
--monitor-*; ``fastbp evaluate``; ``fastbp baselines``. On real MNIST (skipped without it)."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp import cli
from fastbp.io import checkpoint
from fastbp.model import persist

QUICK = ["--limit", "1000", "--dtype", "float64", "--seed", "3", "--batch-size", "10"]


def train(*args):
    return cli.main(["train", *QUICK, *args])


def same_params(a, b):
    return all(np.array_equal(x, y) for x, y in zip([*a.weights, *a.biases],
                                                    [*b.weights, *b.biases]))


def untimed(text):
    """Epoch lines without their seconds and samples/s."""
    return [re.sub(r", [\d.]+ s, [\d,]+ samples/s$", "", line) for line in text.splitlines()
            if line.startswith(("Epoch", "Accuracy", "Cost"))]


# -- save and resume -----------------------------------------------------------------------------
def test_resume_continues_bit_for_bit(data_dir, tmp_path, capsys):
    monitors = ["--monitor-evaluation-accuracy", "--monitor-training-cost", "--lmbda", "0.5"]
    assert train("--epochs", "4", "--save", str(tmp_path / "straight.npz"), *monitors) == 0
    straight_out = capsys.readouterr().out
    assert train("--epochs", "2", "--save", str(tmp_path / "half.npz"), *monitors) == 0
    capsys.readouterr()
    # Options come back from the file: only --resume and the new total of epochs are given.
    assert cli.main(["train", "--resume", str(tmp_path / "half.npz"), "--epochs", "4",
                     "--save", str(tmp_path / "resumed.npz")]) == 0
    resumed_out = capsys.readouterr().out
    assert "resuming at epoch 2" in resumed_out  # the next line printed is "Epoch 2"

    a = persist.load_checkpoint(tmp_path / "straight.npz")
    b = persist.load_checkpoint(tmp_path / "resumed.npz")
    assert same_params(a.network, b.network)  # float64, exact
    assert a.network.rng.bit_generator.state == b.network.rng.bit_generator.state
    key = lambda h: [(r.epoch, r.cost, r.correct) for r in h]  # noqa: E731
    assert key(a.network.history) == key(b.network.history)
    assert a.extra["monitor"] == b.extra["monitor"]
    assert len(a.extra["monitor"]["evaluation_accuracy"]) == 4
    assert untimed(resumed_out) == untimed(straight_out)[len(untimed(straight_out)) // 2:]


def test_a_killed_run_resumes_as_if_never_stopped(data_dir, tmp_path):
    """Kill ``fastbp train --checkpoint-every 1`` after its second epoch, then resume it."""
    assert train("--epochs", "4", "--save", str(tmp_path / "straight.npz"), "--quiet") == 0
    run = tmp_path / "run.npz"
    proc = subprocess.Popen([sys.executable, "-m", "fastbp", "train", *QUICK, "--epochs", "4",
                             "--save", str(run), "--checkpoint-every", "1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("Epoch 1:"):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert 1 <= len(fastbp.load(run).history) <= 4
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0  # --epochs 4 from the file
    straight, resumed = fastbp.load(tmp_path / "straight.npz"), fastbp.load(run)
    assert len(resumed.history) == 4
    assert same_params(straight, resumed)


def test_checkpoint_every_saves_every_n_epochs_and_at_the_end(data_dir, tmp_path, monkeypatch,
                                                              capsys):
    saved = []
    real = checkpoint.save

    def spy(net, path, **kw):
        saved.append(len(net.history))
        return real(net, path, **kw)

    monkeypatch.setattr(checkpoint, "save", spy)
    assert train("--epochs", "5", "--save", str(tmp_path / "m.npz"), "--checkpoint-every",
                 "2") == 0
    assert saved == [2, 4, 5]
    assert f"saved {tmp_path / 'm.npz'} (5 epochs)" in capsys.readouterr().out
    meta = persist.load_checkpoint(tmp_path / "m.npz").extra["train"]
    assert meta["epochs"] == 5 and meta["checkpoint_every"] == 2 and meta["limit"] == 1000


def test_resume_saves_back_into_its_file_and_refuses_other_sizes(data_dir, tmp_path, capsys):
    path = str(tmp_path / "m.npz")
    assert train("--epochs", "1", "--save", path) == 0
    assert cli.main(["train", "--resume", path, "--epochs", "2"]) == 0
    assert len(fastbp.load(path).history) == 2
    capsys.readouterr()
    assert cli.main(["train", "--resume", path, "--sizes", "784,20,10"]) == 2
    assert "--sizes [784, 20, 10] differs from the model" in capsys.readouterr().err
    assert cli.main(["train", "--resume", path, "--epochs", "2"]) == 0  # nothing left to do
    assert len(fastbp.load(path).history) == 2


# -- early stopping and monitoring ---------------------------------------------------------------
def test_patience_stops_on_a_validation_plateau_and_stays_stopped(data_dir, tmp_path,
                                                                   monkeypatch, capsys):
    asked = []

    def plateau(self, X, labels):
        asked.append(X.shape[1])
        return 0.9

    monkeypatch.setattr(fastbp.Network, "accuracy", plateau)
    path = str(tmp_path / "m.npz")
    assert train("--epochs", "30", "--patience", "2", "--save", path) == 0
    out = capsys.readouterr().out
    assert len(fastbp.load(path).history) == 3 and out.count("Epoch ") == 3
    assert "Early stopping: no better validation accuracy in 2 epochs" in out
    assert set(asked) == {10_000}  # the validation set, not the test set's accuracy
    assert cli.main(["train", "--resume", path]) == 0
    assert "had stopped early at epoch 2" in capsys.readouterr().out
    assert len(fastbp.load(path).history) == 3


def test_monitor_flags_print_network2s_lines(data_dir, capsys):
    assert train("--epochs", "2", "--monitor-evaluation-accuracy", "--monitor-evaluation-cost",
                 "--monitor-training-accuracy", "--monitor-training-cost") == 0
    lines = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("Epoch 0:"))
    assert re.fullmatch(r"Cost on training data: [\d.]+", lines[i + 1])
    assert re.fullmatch(r"Accuracy on training data: \d+ / 1000", lines[i + 2])
    assert re.fullmatch(r"Cost on validation data: [\d.]+", lines[i + 3])
    assert re.fullmatch(r"Accuracy on validation data: \d+ / 10000", lines[i + 4])
    assert lines[i + 5].startswith("Epoch 1:")


# -- what is shown ---------------------------------------------------------------------------------
def test_quiet_prints_only_the_result(data_dir, capsys):
    assert train("--epochs", "2", "--quiet") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and re.fullmatch(r"best test accuracy [\d.]+ % \(epoch \d.*", out[0])


def test_a_terminal_gets_a_progress_bar(data_dir, monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert train("--epochs", "2") == 0
    text = screen.getvalue()
    assert "samples/s" in text and "1.00k/1.00k" in text and "cost 0." in text
    assert "Epoch 0:" in text and "Epoch 1:" in text and "|" in text


def test_plot_writes_the_three_pictures(data_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pics = tmp_path / "pics"
    assert train("--epochs", "2", "--plot", str(pics)) == 0
    names = sorted(p.name for p in pics.iterdir())
    assert names == ["confusion.png", "learning_curve.png", "misclassified.png"]
    assert all((pics / n).stat().st_size > 5000 for n in names)
    assert "pictures: " in capsys.readouterr().out


def test_plot_without_matplotlib_fails_before_training(data_dir, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert train("--epochs", "2", "--plot", str(tmp_path)) == 2
    captured = capsys.readouterr()
    assert "pip install 'fastbp[plot]'" in captured.err and "Epoch" not in captured.out


@pytest.mark.parametrize("args, says", [
    (["--checkpoint-every", "2"], "--checkpoint-every needs --save PATH"),
    (["--save", "m.npz", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--patience", "0"], "--patience must be >= 1"),
    (["--save", "/no/such/dir/m.npz"], "does not exist"),
    (["--resume", "/no/such/file.npz"], "no such model file"),
])
def test_bad_keep_options_are_clear_errors(args, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--data", str(tmp_path / "nowhere"), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and "MNIST" not in err  # refused before any data is read


# -- evaluate and baselines ----------------------------------------------------------------------
@pytest.fixture
def model(data_dir, tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert train("--epochs", "2", "--save", str(path), "--quiet") == 0
    capsys.readouterr()
    return path


def test_evaluate_prints_the_figures(model, capsys):
    assert cli.main(["evaluate", str(model), "--show", "3"]) == 0
    out = capsys.readouterr().out
    net = fastbp.load(model)
    data = fastbp.datasets.load_mnist()
    e = fastbp.evaluate(net, data.test.X, data.test.labels)
    assert f"test set: {e.summary()}" in out
    assert e.format_confusion().splitlines()[1] in out
    assert f"#{e.misclassified[0]} ({e.guesses[e.misclassified[0]]} / " in out
    assert "2 epochs trained" in out and "most confused:" in out


def test_evaluate_plots_one_line_per_model(model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    other = tmp_path / "other.npz"
    assert train("--epochs", "1", "--eta", "0.5", "--save", str(other), "--quiet") == 0
    pics = tmp_path / "pics"
    assert cli.main(["evaluate", str(model), str(other), "--plot", str(pics),
                     "--split", "validation"]) == 0
    assert sorted(p.name for p in pics.iterdir()) == [
        "learning_curve.png", "m-confusion.png", "m-misclassified.png",
        "other-confusion.png", "other-misclassified.png"]
    assert "validation set:" in capsys.readouterr().out


def test_evaluate_refuses_a_bad_model(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    assert cli.main(["evaluate", str(bad), "--data", str(tmp_path)]) == 2
    assert "not a fastbp model" in capsys.readouterr().err


def test_baselines_table(model, capsys):
    assert cli.main(["baselines", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^average darkness\s+2,225 / 10,000\s+22\.25 %\s+77\.75 %\s+22\.25 %$",
                     out, re.M)
    assert re.search(r"^random guess\s+[\d,]+ / 10,000", out, re.M)
    assert re.search(rf"^network \({re.escape(str(model))}\)\s+[\d,]+ / 10,000", out, re.M)


def test_baselines_trains_a_network_when_none_is_given(data_dir, capsys):
    assert cli.main(["baselines", "--epochs", "0", "--seed", "4"]) == 0
    assert re.search(r"^network \[784, 30, 10\], 0 epochs\s+[\d,]+ / 10,000",
                     capsys.readouterr().out, re.M)


def test_help_lists_the_new_options():
    out = io.StringIO()
    with pytest.raises(SystemExit):
        sys.stdout, saved = out, sys.stdout
        try:
            cli.main(["train", "--help"])
        finally:
            sys.stdout = saved
    for option in ("--save", "--checkpoint-every", "--resume", "--plot", "--quiet",
                   "--patience", "--lmbda", "--monitor-evaluation-accuracy",
                   "--monitor-evaluation-cost", "--monitor-training-accuracy",
                   "--monitor-training-cost"):
        assert option in out.getvalue()
