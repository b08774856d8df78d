"""``fastbp train --layers SPEC`` and ``--net NAME``: a layer network (chapter 6) from one line.

SPEC is a comma-separated stack, input first, for 28 × 28 one-channel images, e.g.
``conv20x5x5/2:relu,fc100:relu:0.5,softmax10`` (the grammar:
:func:`fastbp.core.layers.spec.parse_layers`); NAME one of the book's chapter-6 networks.
"""

from __future__ import annotations

from typing import Any

from ..core.layers.spec import NETS, parse_layers
from ..errors import ConfigError

__all__ = ["DEFAULT_ETA", "LAYERS_HELP", "NET_HELP", "NETS", "layer_options", "parse_layers"]

DEFAULT_ETA = {"chapter6-conv2": 0.03}
"""η where the book trains a named net with another rate than 0.1 (its ReLU runs)."""

LAYERS_HELP = (
    "train a layer network (chapter 6) instead of --sizes: a comma-separated stack for 28×28 "
    "images, e.g. conv20x5x5/2:relu,conv40x5x5/2:relu,fc100:relu,softmax10 — convFxKHxKW/P "
    "(F filters, P×P max-pooling), fcN, softmaxN last; each with :NEURON (sigmoid, tanh, relu, "
    "linear; default sigmoid) and fc/softmax with a dropout :P (fc100:relu:0.5); the cost is "
    "the log-likelihood and --eta defaults to 0.1")
NET_HELP = ("one of the book's chapter-6 networks: " + "; ".join(
    f"{name} = {spec}" for name, spec in NETS.items()) + " (chapter6-conv2 defaults to η 0.03)")


def layer_options(args: Any) -> list[Any] | None:
    """The layers ``--net`` or ``--layers`` ask for (``None``: a ``--sizes`` network), with
    ``args.eta`` set to the layer networks' default when not given; refuses options of a
    ``--sizes`` network given with them."""
    net, spec = getattr(args, "net", None), getattr(args, "layers", None)
    if net is None and spec is None:
        return None
    if net is not None and spec is not None:
        raise ConfigError("give --net or --layers, not both")
    given = [f"--{key}" for key in ("sizes", "cost", "activation", "init")
             if getattr(args, key, None) is not None]
    if getattr(args, "dropout", None):
        given.append("--dropout (give fc and softmax layers their own :P)")
    if getattr(args, "distributed", False):
        given.append("--distributed (layer networks train in one process)")
    if given:
        raise ConfigError(f"{', '.join(given)} describe a --sizes network; a layer network "
                          "(--net, --layers) has its neurons, dropout and cost in its layers")
    if net is not None and net not in NETS:
        raise ConfigError(f"--net {net!r} is not one of {', '.join(NETS)}")
    if getattr(args, "eta", None) is None:
        args.eta = DEFAULT_ETA.get(net or "", 0.1)
    return parse_layers(NETS[net] if net is not None else spec)
