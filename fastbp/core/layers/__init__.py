"""Layer kinds: each owns its parameter shapes, initialisation, forward and backward pass.

A layer kind maps a batch of inputs ``a^{l-1}`` (one sample per position of the last axis) to
``a^l`` and back: :meth:`Layer.backward` takes ``∂C/∂a^l`` (or, for the output layer, ``δ^L``
itself), returns ``∂C/∂W^l``, ``∂C/∂b^l`` summed over the batch and ``∂C/∂a^{l-1}`` for the
layer below. Chapter 6's kinds: :class:`~.dense.FullyConnected`, :class:`~.dense.Softmax`,
:class:`~.conv_pool.ConvPool`. Every pass goes through device operations
(:class:`fastbp.core.ops.Ops`), so each device runs them.
"""

from .base import ACTIVATIONS, Layer, Workspace
from .conv_pool import ConvPool
from .dense import FullyConnected, Softmax

__all__ = ["ACTIVATIONS", "ConvPool", "FullyConnected", "Layer", "Softmax", "Workspace"]
from .stack import Stack  # noqa: E402

__all__ += ["Stack"]
