"""A network from its file: :mod:`fastbp.io.checkpoint` reads plain state
(:class:`~fastbp.io.checkpoint.ModelState`); this module builds the :class:`Network` it describes.
(:meth:`Network.state` and :meth:`Network.save` go the other way.)"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.layers.spec import from_spec
from ..errors import DeviceError, FastbpError, ModelFormatError
from ..io import checkpoint, network2
from .network import Network


@dataclass
class Checkpoint:
    """A loaded file: the network (history and random state restored) and the raw metadata."""

    network: Network
    metadata: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
        return int(self.metadata["epoch"])


def load(path: str | os.PathLike, *, device: str | None = None) -> Network:
    """The network saved at ``path``, on ``device`` (default: the current device), with its
    training history and random state; raises :class:`ModelFormatError` for anything that is
    not an intact fastbp model. A ``.json`` file is the book's: what ``network2.py``'s ``save``
    writes (:mod:`fastbp.io.network2`), loaded as ``float64`` with a fresh random state."""
    return load_checkpoint(path, device=device).network


def load_checkpoint(path: str | os.PathLike, *, device: str | None = None) -> Checkpoint:
    """Like :func:`load`, also returning the metadata (with the ``extra`` dict)."""
    path = checkpoint.as_path(path)
    if network2.is_json(path):
        state = network2.read_state(path)
        meta = {"format": network2.FORMAT, "epoch": 0, "sizes": state.sizes, "cost": state.cost}
    else:
        state, meta = checkpoint.read_state(path)
    try:
        kinds = state.kinds or ["sigmoid"] * (len(state.sizes) - 1)
        if state.layers is not None:  # a layer stack (version 4), its specs checked on reading
            net = Network([from_spec(spec) for spec in state.layers], device=device,
                          dtype=state.dtype)
        else:
            net = Network(state.sizes, cost=state.cost, device=device, dtype=state.dtype,
                          init=state.init, activation=kinds[:-1])
        if list(net.kinds) != list(kinds):
            raise ModelFormatError(f"{path}: layer kinds {kinds} do not fit the cost "
                                   f"{state.cost!r} (its output layer is {net.kinds[-1]})")
    except DeviceError:
        raise
    except FastbpError as exc:
        raise ModelFormatError(f"{path}: invalid metadata ({exc})") from exc
    net.weights = state.weights
    net.biases = state.biases
    net.velocities = state.velocities
    net.rng = state.rng
    net.history = state.history
    return Checkpoint(net, meta, dict(state.extra))
