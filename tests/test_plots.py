"""Pictures: each PNG exists, has its documented size in pixels and is not blank."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

import fastbp
from fastbp.model.evaluation import score

pytest.importorskip("matplotlib")
from fastbp.io import plots  # noqa: E402


def png_size(path):
    """(width, height) from the PNG header."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", head[16:24])


def pixels(path):
    from matplotlib.image import imread

    return imread(path)[..., :3]  # RGB in [0, 1]


def assert_not_blank(path, at_least=0.02):
    rgb = pixels(path)
    ink = (rgb.min(axis=2) < 0.9).mean()  # fraction of pixels clearly off white
    assert ink > at_least, f"{path.name}: only {100 * ink:.2f} % of the pixels are drawn"
    assert rgb.std() > 0.05
    colours = len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours > 10


def history(accuracies, costs):
    return [fastbp.EpochRecord(epoch=i, cost=c, accuracy=a, correct=None, seconds=1.0,
                               samples_per_s=1e5) for i, (a, c) in enumerate(zip(accuracies,
                                                                                  costs))]


@pytest.fixture
def digits(rng):
    """28 × 28 'images' (one per column), answers and guesses with some mistakes."""
    X = rng.random((784, 60)) * (rng.random((784, 60)) > 0.7)
    labels = rng.integers(0, 10, 60)
    guesses = np.where(rng.random(60) < 0.7, labels, rng.integers(0, 10, 60))
    return X, score(guesses, labels)


def test_learning_curve_one_run(tmp_path):
    path = plots.learning_curves(history([0.9, 0.93, 0.94], [0.3, 0.2, 0.15]),
                                 tmp_path / "lc.png")
    assert path.exists() and png_size(path) == (1000, 400)
    assert_not_blank(path)


def test_learning_curve_several_runs_and_dict_records(tmp_path):
    runs = {"η = 3": history([0.9, 0.93], [0.3, 0.2]),
            "η = 0.5": [vars(r) for r in history([0.8, 0.85, 0.9], [0.5, 0.4, 0.3])],
            "no test set": history([None, None], [0.6, 0.5])}
    one = plots.learning_curves(runs, tmp_path / "several.png", title="three runs")
    assert png_size(one) == (1000, 400)
    assert_not_blank(one)
    # More runs draw more: the picture differs from a single run's.
    single = plots.learning_curves({"η = 3": runs["η = 3"]}, tmp_path / "single.png")
    assert not np.array_equal(pixels(one), pixels(single))


def test_learning_curve_needs_a_history(tmp_path):
    with pytest.raises(fastbp.ConfigError, match="nothing to plot"):
        plots.learning_curves({"a": []}, tmp_path / "x.png")


def test_confusion_heatmap(tmp_path, digits):
    _, e = digits
    path = plots.confusion_heatmap(e, tmp_path / "sub" / "confusion.png")
    assert path.exists() and png_size(path) == (640, 560)
    assert_not_blank(path, at_least=0.05)
    rgb = pixels(path)
    blue = (rgb[..., 2] > rgb[..., 0] + 0.2).mean()  # the heat map's cells are shades of blue
    assert blue > 0.05


def test_misclassified_grid(tmp_path, digits):
    X, e = digits
    n_wrong = len(e.misclassified)
    assert n_wrong > 10
    path = plots.misclassified_grid(X, e, tmp_path / "wrong.png", limit=12, columns=6)
    assert png_size(path) == (660, 320)  # 6 × 1.1 in wide, 2 rows × 1.3 in + 0.6 in, 100 dpi
    assert_not_blank(path)
    few = plots.misclassified_grid(X, e, tmp_path / "few.png", limit=3, columns=6)
    assert png_size(few) == (660, 190)


def test_misclassified_grid_needs_square_images_or_a_shape(tmp_path, digits):
    X, e = digits
    with pytest.raises(fastbp.ConfigError, match="not square"):
        plots.misclassified_grid(X[:780], e, tmp_path / "x.png")
    path = plots.misclassified_grid(X[:780], e, tmp_path / "x.png", shape=(26, 30), limit=5)
    assert_not_blank(path)


def test_evaluation_pictures_and_a_perfect_score(tmp_path, digits):
    X, _ = digits
    perfect = score(np.arange(60) % 10, np.arange(60) % 10)
    paths = plots.evaluation_pictures(X, perfect, tmp_path, prefix="p-")
    assert [p.name for p in paths] == ["p-confusion.png", "p-misclassified.png"]
    assert all(p.exists() for p in paths)


def test_without_matplotlib_the_error_names_the_extra(tmp_path, digits, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(fastbp.MissingDependency, match=r"pip install 'fastbp\[plot\]'"):
        plots.confusion_heatmap(digits[1], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
