"""The book's ``network3`` (chapter 6): ``import fastbp.network3 as network3``; it lives in
:mod:`fastbp.model.network3`."""

from .model.network3 import (
    ConvPoolLayer,
    FullyConnectedLayer,
    Network,
    ReLU,
    SoftmaxLayer,
    linear,
    load_data_shared,
    sigmoid,
    size,
    tanh,
)

__all__ = ["ConvPoolLayer", "FullyConnectedLayer", "Network", "ReLU", "SoftmaxLayer",
           "linear", "load_data_shared", "sigmoid", "size", "tanh"]
