"""Kept for code that imports ``fastbp.mnist_loader``: the module is
:mod:`fastbp.data.mnist_loader`."""

import sys

from .data.mnist_loader import __name__ as _name

sys.modules[__name__] = sys.modules[_name]
