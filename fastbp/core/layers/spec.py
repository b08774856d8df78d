"""Each layer kind as a small JSON spec, and back: what a model file stores of a layer stack.

``{"kind": "conv-pool", "filter_shape": [F, C, kh, kw], "image_shape": [C, H, W],
"poolsize": [ph, pw], "activation": "relu"}``, ``{"kind": "fully-connected", "n_in": 720,
"n_out": 100, "activation": "relu", "p_dropout": 0.5}``, ``{"kind": "softmax", "n_in": 100,
"n_out": 10, "p_dropout": 0.0}``. A spec is checked as a layer's constructor checks its
arguments (``ConfigError`` naming the bad value).
"""

from __future__ import annotations

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
