"""``fastbp train --layers SPEC`` and ``--net NAME``: a layer network (chapter 6) from one line.

SPEC is a comma-separated stack, input first, for 28 × 28 one-channel images:

- ``convFxKHxKW/P[:NEURON]``: ``F`` filters of ``KH × KW``, then ``P × P`` max-pooling
  (``/PHxPW`` for another window), e.g. ``conv20x5x5/2:relu``;
- ``fcN[:NEURON[:P]]``: ``N`` fully connected neurons, dropout ``P`` on their inputs;
- ``softmaxN[:P]``: the output layer, last.

``NEURON`` is sigmoid (the default, network3's), tanh, relu or linear.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError

IMAGE = (1, 28, 28)  # MNIST and the data sets of its format

NETS = {
    "chapter6-fc": "fc100:sigmoid,softmax10",
    "chapter6-conv1": "conv20x5x5/2:sigmoid,fc100:sigmoid,softmax10",
    "chapter6-conv2": "conv20x5x5/2:relu,conv40x5x5/2:relu,fc100:relu,softmax10",
}
"""The book's chapter-6 networks: fully connected 100, one conv-pool, two conv-pool with ReLU."""

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

_CONV = re.compile(r"conv(\d+)x(\d+)x(\d+)/(\d+)(?:x(\d+))?$")
_DENSE = re.compile(r"(fc|softmax)(\d+)$")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def parse_layers(text: str, image: tuple[int, int, int] = IMAGE) -> list[Any]:
    """The layer objects SPEC describes (see the module docstring), on images ``image``
    ``(C, H, W)``; ``ConfigError`` naming the bad item."""
    from ..core.layers import ConvPool, FullyConnected, Softmax

    items = [item.strip() for item in str(text).split(",")]
    if not text or not all(items):
        raise ConfigError(f"--layers needs a comma-separated stack like "
                          f"{NETS['chapter6-conv1']}, got {text!r}")
    layers: list[Any] = []
    shape: tuple[int, ...] = image
    for i, item in enumerate(items):
        head, *rest = item.split(":")
        conv, dense = _CONV.match(head), _DENSE.match(head)
        n_in = 1
        for d in shape:
            n_in *= d
        if conv:
            if len(rest) > 1:
                raise ConfigError(f"--layers item {item!r}: a conv layer takes :NEURON only")
            if len(shape) != 3:
                raise ConfigError(f"--layers item {item!r}: a conv layer follows the image or "
                                  "another conv layer, not a fully connected one")
            f, kh, kw, ph = (int(conv.group(k)) for k in (1, 2, 3, 4))
            pw = int(conv.group(5) or ph)
            layer: Any = ConvPool((f, shape[0], kh, kw), shape, (ph, pw), *rest)
        elif dense and dense.group(1) == "fc":
            if len(rest) > 2:
                raise ConfigError(f"--layers item {item!r}: fcN takes :NEURON[:P]")
            p = _number(rest[1], f"the dropout of {item!r}") if len(rest) > 1 else 0.0
            layer = FullyConnected(n_in, int(dense.group(2)), rest[0] if rest else "sigmoid", p)
        elif dense:
            if i != len(items) - 1 or len(rest) > 1:
                raise ConfigError(f"--layers item {item!r}: softmaxN[:P] is the last layer")
            p = _number(rest[0], f"the dropout of {item!r}") if rest else 0.0
            layer = Softmax(n_in, int(dense.group(2)), p)
        else:
            raise ConfigError(f"--layers item {item!r} is none of convFxKHxKW/P, fcN, softmaxN")
        layers.append(layer)
        shape = tuple(layer.out_shape)
    return layers


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
