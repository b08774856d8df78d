"""Chapter 3's learning-rate schedule (halve η after N epochs without a better validation
accuracy, stop at the K-th time) and the book's expanded training set (one-pixel shifts)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mnist_dir

import fastbp
from fastbp import cli
from fastbp.core.records import EpochRecord
from fastbp.datasets import Split, expand
from fastbp.errors import ConfigError, ShapeError
from fastbp.model.monitoring import LearningRateSchedule


def record(epoch, accuracy):
    return EpochRecord(epoch=epoch, cost=0.0, accuracy=accuracy, correct=None, seconds=0.0,
                       samples_per_s=0.0)


def test_the_schedule_halves_after_n_flat_epochs_and_stops_at_the_kth_time():
    s = LearningRateSchedule(2, 3)
    assert s.begin(0.8) == 0.8
    go = [s(record(e, a), None) for e, a in enumerate(
        [0.5, 0.6, 0.6, 0.55,   # two epochs without a better one: η 0.8 → 0.4
         0.7, 0.7, 0.7,         # again: 0.4 → 0.2
         0.71, 0.6, 0.6])]      # the third time: stop (η would be 0.1)
    assert s.etas == [0.8] * 4 + [0.4] * 3 + [0.2] * 3
    assert go == [True] * 9 + [False] and s.stopped_epoch == 9 and s.halved == 3
    again = LearningRateSchedule(2, 3)
    again.load_state(s.state())
    assert again.begin(5.0) == 0.2 and again.state() == s.state()  # a resumed run keeps it
    with pytest.raises(ConfigError):
        LearningRateSchedule(0, 3)


def test_train_runs_each_epoch_at_the_scheduled_rate_with_its_l2_factor(rng):
    """The parameters after a scheduled run are, bit for bit, those of epochs run one by one
    at the rates the schedule chose (with λ, so the decay 1 − ηλ/n follows η)."""
    X, y = rng.random((8, 40)), rng.integers(0, 3, 40)
    val = (rng.random((8, 20)), rng.integers(0, 3, 20))
    net = fastbp.Network([8, 5, 3], cost="cross-entropy", seed=3, dtype="float64")
    twin = net.to(net.device)
    s = LearningRateSchedule(1, 3, data=val)
    net.train(X, y, epochs=50, batch_size=4, eta=2.0, lmbda=3.0, schedule=s)
    assert len(net.history) == len(s.etas) == s.stopped_epoch + 1 < 50
    assert sorted(set(s.etas), reverse=True) == [2.0, 1.0, 0.5]
    for eta in s.etas:
        twin.train(X, y, epochs=1, batch_size=4, eta=eta, lmbda=3.0)
    assert all(np.array_equal(a, b) for a, b in zip([*net.weights, *net.biases],
                                                     [*twin.weights, *twin.biases]))


def test_expansion_shifts_by_one_pixel_with_zero_fill_and_keeps_labels(rng):
    images = rng.integers(1, 256, (3, 784)).astype(np.float32)  # no zero pixel of its own
    labels = np.array([4, 0, 9])
    out = expand(Split(images, labels))
    assert out.images.shape == (15, 784) and out.images.dtype == np.float32
    assert np.array_equal(out.labels, np.repeat(labels, 5))
    for i, img in enumerate(images.reshape(3, 28, 28)):
        same, down, up, right, left = out.images[5 * i:5 * i + 5].reshape(5, 28, 28)
        assert np.array_equal(same, img)
        assert np.array_equal(down[1:], img[:-1]) and not down[0].any()
        assert np.array_equal(up[:-1], img[1:]) and not up[-1].any()
        assert np.array_equal(right[:, 1:], img[:, :-1]) and not right[:, 0].any()
        assert np.array_equal(left[:, :-1], img[:, 1:]) and not left[:, -1].any()
        # what expand_mnist.py does: np.roll, then the wrapped row or column zeroed
        book = np.roll(img, 1, 0)
        book[0, :] = 0
        assert np.array_equal(down, book)
    with pytest.raises(ShapeError):
        expand(Split(images[:, :700], labels))


def test_the_command_line_expands_and_schedules(capsys, tmp_path):
    data = mnist_dir()
    if data is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    path = tmp_path / "m.npz"
    assert cli.main(["train", "--data", str(data), "--limit", "300", "--expand", "--epochs", "40",
                     "--schedule", "1,2", "--seed", "1", "--cost", "cross-entropy",
                     "--eta", "0.5", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "on 1,500 MNIST training images" in out
    assert "Schedule: no better validation accuracy in 1 epochs: η = 0.25" in out
    assert "halved 2 times: stopping" in out
    saved = fastbp.model.persist.load_checkpoint(path)
    assert saved.extra["schedule"]["halved"] == 2
    assert len(saved.network.history) == saved.extra["schedule"]["stopped_epoch"] + 1 < 40
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", str(data), "--schedule", "0,2"])
    assert "needs N >= 1 and K >= 1" in capsys.readouterr().err


def test_a_schedule_cut_short_by_the_epoch_limit_says_so() -> None:
    """``--schedule 10,7`` over 30 epochs never halves η 7 times: the run says it ended first."""
    import numpy as np

    import fastbp
    from fastbp.model.monitoring import LearningRateSchedule

    rng = np.random.default_rng(0)
    X, labels = rng.random((6, 40)), rng.integers(0, 3, 40)
    said: list[str] = []
    schedule = LearningRateSchedule(10, 7, data=(X, labels), verbose=True, print_fn=said.append)
    fastbp.Network([6, 4, 3], seed=1).train(X, labels, epochs=3, batch_size=10, eta=0.5,
                                            schedule=schedule)
    assert schedule.stopped_epoch is None
    assert said[-1].startswith("Schedule: not finished when the run ended: η was halved 0 of 7")
    done = LearningRateSchedule(1, 1, data=(X, labels), verbose=True, print_fn=said.append)
    fastbp.Network([6, 4, 3], seed=1).train(X, labels, epochs=50, batch_size=10, eta=1e-9,
                                            schedule=done)
    assert done.stopped_epoch is not None and done.unfinished() is None
