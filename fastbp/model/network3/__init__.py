"""The book's ``network3.py`` (chapter 6) on fastbp: ``import fastbp.network3 as network3``.

The same classes, functions and prints as the book's Theano program, running on any fastbp
device (:mod:`fastbp.core.layers` holds the equations). ``docs/guide/chapter6.md`` says what
differs and where the book's code has a defect.
"""

from .data import load_data_shared, size
from .layers import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer, linear, sigmoid, tanh
from .network import Network

__all__ = ["ConvPoolLayer", "FullyConnectedLayer", "Network", "ReLU", "SoftmaxLayer",
           "linear", "load_data_shared", "sigmoid", "size", "tanh"]
