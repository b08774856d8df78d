"""Pictures of a run (matplotlib, the ``plot`` extra; imported only when a picture is drawn):
the learning curve, the confusion matrix as a heat map, and the misclassified digits.

Figures are drawn on ``matplotlib.figure.Figure`` objects, never through ``pyplot``, so they
need no display, leave no global state behind and work from threads. Each function writes one
PNG of a fixed size in pixels (``figsize × DPI``) and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, MissingDependency

if TYPE_CHECKING:
    from ..core.records import Evaluation

DPI = 100
PICTURES = ("learning_curve.png", "confusion.png", "misclassified.png")
"""The pictures ``--plot DIR`` writes (checked before any work)."""
LEARNING_CURVE_SIZE = (10.0, 4.0)  # inches: 1000 x 400 pixels
CONFUSION_SIZE = (6.4, 5.6)  # 640 x 560 pixels
CELL = (1.1, 1.3)  # inches per misclassified digit (with its label)


def _figure(figsize: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependency(
            "pictures need matplotlib: pip install 'fastbp[plot]'") from exc
    return Figure(figsize=figsize, dpi=DPI)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` as a save writes a model (only a regular file, never
    a FIFO or a device there; atomically)."""
    from .targets import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format="png"))
    return path


def _records(history: Any) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else vars(r) for r in history]


def learning_curves(runs: Mapping[str, Sequence[Any]] | Sequence[Any],
                    path: str | os.PathLike, *, costs: str | Mapping[str, str] | None = None,
                    title: str | None = None) -> Path:
    """Test accuracy and mean training cost per sample per epoch, one line per run.

    ``runs`` maps a run's name to its history (``EpochRecord`` s or their dicts); a single
    history is one unnamed run. ``costs`` names each run's cost function (one name for all, or
    a mapping by run): runs under different cost functions get a cost panel each, since their
    values are not comparable. The x axis is the epoch as training prints it (``record.epoch``,
    from 0). The figure is ``LEARNING_CURVE_SIZE`` for one cost panel, wider for more.
    """
    if not isinstance(runs, Mapping):
        runs = {"": runs}
    if not runs or not any(len(h) for h in runs.values()):
        raise ConfigError("nothing to plot: every history is empty")
    cost_of = {name: (costs if isinstance(costs, str) or costs is None else costs.get(name))
               for name in runs}
    panels = list(dict.fromkeys(cost_of.values()))  # one cost panel per cost function
    width, height = LEARNING_CURVE_SIZE
    fig = _figure((width / 2 * (1 + len(panels)), height))
    axes = fig.subplots(1, 1 + len(panels))
    acc_ax, cost_axes = axes[0], dict(zip(panels, axes[1:]))
    named = len(runs) > 1 or bool(next(iter(runs)))
    for i, (name, history) in enumerate(runs.items()):
        recs = _records(history)
        epochs = [r["epoch"] for r in recs]
        with_acc = [(e, 100 * r["accuracy"]) for e, r in zip(epochs, recs)
                    if r.get("accuracy") is not None]
        style = {"marker": "o", "markersize": 3, "label": name or None, "color": f"C{i}"}
        if with_acc:
            acc_ax.plot(*zip(*with_acc), **style)
        cost_axes[cost_of[name]].plot(epochs, [r["cost"] for r in recs], **style)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    for cost, ax in cost_axes.items():
        what = f"{cost} cost" if cost else "cost"
        ax.set(xlabel="epoch", ylabel=f"mean {what} per sample",
               title=f"Training cost ({cost})" if cost else "Training cost")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if named and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def confusion_heatmap(evaluation: Evaluation, path: str | os.PathLike, *,
                      title: str | None = None) -> Path:
    """The confusion matrix: rows are answers, columns guesses, each cell its count, shaded by
    the fraction of the answer's samples (on a square-root scale, so the mistakes show)."""
    fig = _figure(CONFUSION_SIZE)
    from matplotlib.colors import PowerNorm

    c = evaluation.confusion
    k = c.shape[0]
    frac = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0))
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(c[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set(xlabel="guess", ylabel="answer",
           title=title or f"Confusion matrix: {evaluation.correct:,} / {evaluation.n:,} correct")
    fig.colorbar(im, ax=ax, label="fraction of the answer's samples", shrink=0.85)
    fig.tight_layout()
    return _save(fig, path)


def misclassified_grid(X: Any, evaluation: Evaluation, path: str | os.PathLike, *,
                       limit: int = 40, columns: int = 10, shape: tuple[int, int] | None = None,
                       title: str | None = None) -> Path:
    """The first ``limit`` misclassified samples (columns of ``X``), each labelled
    "guess / answer" as on the lecture's slide. ``shape`` is an image's ``(rows, cols)``
    (default: square). The PNG is ``columns × 110`` pixels wide."""
    X = np.asarray(X)
    n_pixels = X.shape[0]
    if shape is None:
        side = int(round(np.sqrt(n_pixels)))
        if side * side != n_pixels:
            raise ConfigError(f"samples of {n_pixels} pixels are not square; pass shape=(h, w)")
        shape = (side, side)
    if shape[0] * shape[1] != n_pixels:
        raise ConfigError(f"shape {shape} does not hold {n_pixels} pixels")
    wrong = evaluation.misclassified[:max(0, limit)]
    rows = max(1, -(-len(wrong) // columns))
    fig = _figure((columns * CELL[0], rows * CELL[1] + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, columns)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, wrong):
        ax.imshow(X[:, i].reshape(shape), cmap="gray_r", vmin=0.0, vmax=max(1.0, X.max()))
        ax.set_title(f"{evaluation.guesses[i]} / {evaluation.labels[i]}", fontsize=11)
    shown = len(wrong)
    total = len(evaluation.misclassified)
    fig.suptitle(title or (f"Misclassified, guess / answer: {shown} of {total:,}" if total
                           else "No misclassified samples"))
    fig.tight_layout()
    return _save(fig, path)


def evaluation_pictures(X: Any, evaluation: Evaluation, directory: str | os.PathLike,
                        prefix: str = "") -> list[Path]:
    """``confusion.png`` and ``misclassified.png`` (with ``prefix``) in ``directory``."""
    d = Path(directory)
    return [confusion_heatmap(evaluation, d / f"{prefix}confusion.png"),
            misclassified_grid(X, evaluation, d / f"{prefix}misclassified.png")]


def accuracy_bars(results: Sequence[tuple[str, float, float | None]],
                  path: str | os.PathLike, *, title: str | None = None) -> Path:
    """One bar per method: ``(name, accuracy, reference)`` with accuracies in [0, 1]; a
    reference figure (e.g. the book's), where there is one, is marked on its bar."""
    if not results:
        raise ConfigError("nothing to plot: no results")
    fig = _figure((8.0, 0.6 * len(results) + 1.4))
    ax = fig.subplots()
    names = [r[0] for r in results][::-1]
    accs = [100 * r[1] for r in results][::-1]
    bars = ax.barh(names, accs, color="C0")
    for bar, acc in zip(bars, accs):
        ax.text(min(acc, 100.0) + 1, bar.get_y() + bar.get_height() / 2, f"{acc:.2f} %",
                va="center", fontsize=9)
    refs = [(100 * r[2], i) for i, r in enumerate(results[::-1]) if r[2] is not None]
    if refs:
        ax.scatter(*zip(*refs), marker="|", s=300, color="black", zorder=3, label="the book")
        ax.legend(fontsize="small", loc="lower right")
    ax.set(xlim=(0, 112), xlabel="correct on the test set (%)",
           title=title or "Accuracy on the test set")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def filter_images(net: Any, layer: int = 0, channel: int = 0) -> np.ndarray:
    """The filters of conv layer ``layer`` of a layer network as images ``(F, kh, kw)``:
    ``W`` ``(F, C·kh·kw)`` read as ``(F, C, kh, kw)``, input channel ``channel``."""
    layers = getattr(net, "layers", None)
    if layers is None:
        raise ConfigError("filters belong to a layer network's conv layers; this network has "
                          "no layers (build it from fastbp.layers.ConvPool and others)")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ConfigError(f"layer must be an index from 0 to {len(layers) - 1}, got {layer!r}")
    shape = getattr(layers[layer], "filter_shape", None)
    if shape is None:
        raise ConfigError(f"layer {layer} is {type(layers[layer]).__name__}, not a conv layer: "
                          "filters are a ConvPool layer's")
    f, c, kh, kw = shape
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < c:
        raise ConfigError(f"channel must be an index from 0 to {c - 1}, got {channel!r}")
    return np.asarray(net.weights[layer]).reshape(f, c, kh, kw)[:, channel].copy()


def plot_filters(net: Any, path: str | os.PathLike, *, layer: int = 0, channel: int = 0,
                 columns: int = 10, title: str | None = None) -> Path:
    """The learned filters of conv layer ``layer`` (its input channel ``channel``), one small
    image each, ``columns`` to a row, on one grey scale symmetric about 0 (darker: a larger
    weight), as the book shows its first layer's 20 filters. The PNG is ``columns × 80``
    pixels wide."""
    images = filter_images(net, layer, channel)
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ConfigError(f"columns must be a positive integer, got {columns!r}")
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    fig = _figure((columns * 0.8, rows * 0.8 + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, columns)).reshape(-1)
    scale = float(np.abs(images).max()) or 1.0
    for ax in axes:
        ax.axis("off")
    for ax, image in zip(axes, images):
        ax.imshow(image, cmap="gray_r", vmin=-scale, vmax=scale, interpolation="nearest")
    fig.suptitle(title or f"Layer {layer}: {len(images)} filters of "
                 f"{images.shape[1]}×{images.shape[2]}", fontsize=10)
    return _save(fig, path)
