"""Chapter 6's layer kinds for ``fastbp.Network(layers)``: ``ConvPool(filter_shape,
image_shape, poolsize, activation)``, ``FullyConnected(n_in, n_out, activation, p_dropout)``,
``Softmax(n_in, n_out, p_dropout)`` (the output layer). Re-exported from
:mod:`fastbp.core.layers`."""

from .core.layers import ConvPool, FullyConnected, Softmax

__all__ = ["ConvPool", "FullyConnected", "Softmax"]
