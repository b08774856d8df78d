"""fastbp-numba: the ``cpu-jit`` device, a whole epoch of mini-batch SGD compiled with Numba."""

from .backend import NumbaBackend

__all__ = ["NumbaBackend"]
