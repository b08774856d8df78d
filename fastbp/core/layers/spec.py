"""Each layer kind as a small JSON spec, and back: what a model file stores of a layer stack.

``{"kind": "conv-pool", "filter_shape": [F, C, kh, kw], "image_shape": [C, H, W],
"poolsize": [ph, pw], "activation": "relu"}``, ``{"kind": "fully-connected", "n_in": 720,
"n_out": 100, "activation": "relu", "p_dropout": 0.5}``, ``{"kind": "softmax", "n_in": 100,
"n_out": 10, "p_dropout": 0.0}``. A spec is checked as a layer's constructor checks its
arguments (``ConfigError`` naming the bad value).

A whole stack also reads from one line (:func:`parse_layers`, ``fastbp train --layers``), input
first, for images ``(C, H, W)`` (MNIST's ``(1, 28, 28)`` by default):
``convFxKHxKW/P[:NEURON]`` (``F`` filters of ``KH × KW``, then ``P × P`` max-pooling; ``/PHxPW``
for another window), ``fcN[:NEURON[:P]]`` (dropout ``P`` on its inputs) and ``softmaxN[:P]``
last; ``NEURON`` is sigmoid (the default, network3's), tanh, relu or linear.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import ConfigError
from .base import Layer
from .conv_pool import ConvPool
from .dense import FullyConnected, Softmax

KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    ConvPool.kind_name: (ConvPool, ("filter_shape", "image_shape", "poolsize", "activation")),
    FullyConnected.kind_name: (FullyConnected, ("n_in", "n_out", "activation", "p_dropout")),
    Softmax.kind_name: (Softmax, ("n_in", "n_out", "p_dropout")),
}


def kind_of(layer: Any) -> str:
    """The spec kind of ``layer`` (its most derived layer class of this package)."""
    for name, (cls, _) in reversed(list(KINDS.items())):  # Softmax before FullyConnected
        if isinstance(layer, cls):
            return name
    raise ConfigError(f"{type(layer).__name__} is not a layer kind: use fastbp.layers.ConvPool,"
                      " FullyConnected or Softmax")


def to_spec(layer: Layer) -> dict[str, Any]:
    """``layer`` as a JSON-ready dict (its kind and its constructor's arguments)."""
    kind = kind_of(layer)
    out: dict[str, Any] = {"kind": kind}
    for key in KINDS[kind][1]:
        value = getattr(layer, key)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def from_spec(spec: Any) -> Layer:
    """The layer a spec describes; ``ConfigError`` for an unknown kind, missing or extra keys,
    or values the layer refuses."""
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        found = spec.get("kind") if isinstance(spec, dict) else type(spec).__name__
        raise ConfigError(f"layer spec of unknown kind {found!r}; kinds: {sorted(KINDS)}")
    cls, keys = KINDS[spec["kind"]]
    given = set(spec) - {"kind"}
    if given != set(keys):
        raise ConfigError(f"a {spec['kind']} layer spec has the keys {sorted(keys)}, got "
                          f"{sorted(given)}")
    layer: Layer = cls(**{key: spec[key] for key in keys})
    return layer


def describe(layer: Layer) -> str:
    """``layer`` as the Python that builds it, e.g. ``ConvPool((20, 1, 5, 5), (1, 28, 28),
    (2, 2), 'relu')``."""
    spec = to_spec(layer)
    cls = KINDS[spec.pop("kind")][0]
    args = [repr(tuple(v)) if isinstance(v, list) else repr(v) for v in spec.values()]
    return f"{cls.__name__}({', '.join(args)})"


IMAGE = (1, 28, 28)  # MNIST and the data sets of its format

NETS = {
    "chapter6-fc": "fc100:sigmoid,softmax10",
    "chapter6-conv1": "conv20x5x5/2:sigmoid,fc100:sigmoid,softmax10",
    "chapter6-conv2": "conv20x5x5/2:relu,conv40x5x5/2:relu,fc100:relu,softmax10",
}
"""The book's chapter-6 networks: fully connected 100, one conv-pool, two conv-pool with ReLU."""

_CONV = re.compile(r"conv(\d+)x(\d+)x(\d+)/(\d+)(?:x(\d+))?$")
_DENSE = re.compile(r"(fc|softmax)(\d+)$")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def parse_layers(text: str, image: tuple[int, ...] = IMAGE) -> list[Layer]:
    """The layer objects SPEC describes (see the module docstring), on images ``image``
    ``(C, H, W)``; ``ConfigError`` naming the bad item."""
    items = [item.strip() for item in str(text).split(",")]
    if not text or not all(items):
        raise ConfigError(f"--layers needs a comma-separated stack like "
                          f"{NETS['chapter6-conv1']}, got {text!r}")
    layers: list[Layer] = []
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
