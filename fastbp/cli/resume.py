"""``fastbp train --resume PATH``: the network and the run's saved state from ``PATH``.

A fastbp model file holds everything. The book's ``network2.py`` JSON holds only the weights and
biases (float64), so ``--save NAME.json`` also writes ``NAME.fastbp.npz`` beside it
(:func:`fastbp.cli.outputs.state_file`): the random state, history, velocities, training options
and the parameters in the run's own dtype. ``--resume NAME.json`` continues bit for bit from that
file when it holds the JSON's weights, refuses when it holds others (the JSON changed since), and
without it resumes from the JSON's weights alone, saying what starts afresh.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..io import network2
from .outputs import state_file


def load_run(path: str, device: Any) -> tuple[Any, dict[str, Any], str | None, str]:
    """``(network, extra, note, source)``: the network to resume, the saved ``extra`` (the
    options and callbacks' state), a line saying what a JSON file restores (``None`` for a
    fastbp model) and the file ``extra`` came from."""
    from ..model.persist import load_checkpoint

    ckpt = load_checkpoint(path, device=device)
    if ckpt.metadata.get("format") != network2.FORMAT:
        return ckpt.network, ckpt.extra, None, path
    state = state_file(path)
    net = ckpt.network
    if not os.path.lexists(state):
        return net, {}, (
            f"{path} is network2.py's file: resuming from its weights and biases alone "
            f"(float64, the {net.cost.name} cost); the epoch count, random state, history, "
            f"velocities and training options start afresh (no {state} beside it)"), path
    full = load_checkpoint(state, device=device)
    other = full.network
    same = other.sizes == net.sizes and other.cost.name == net.cost.name and all(
        np.array_equal(np.asarray(a, dtype=np.float64), b)
        for a, b in zip([*other.weights, *other.biases], [*net.weights, *net.biases]))
    if not same:
        raise ModelFormatError(
            f"{path}: its weights differ from those in {state}, the training state saved with "
            f"it (the JSON changed since); delete {state} to resume from the JSON alone")
    kept = ["the random state", "the history", "the training options"]
    if other.velocities is not None:
        kept.append("the momentum velocities")
    note = (f"resuming {path} with its training state from {state}: epoch {len(other.history)}, "
            f"{', '.join(kept)} and the {other.dtype} parameters")
    return other, full.extra, note, str(state)
