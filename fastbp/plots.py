"""Kept for code that imports ``fastbp.plots``: the module is :mod:`fastbp.io.plots`."""

import sys

from .io.plots import __name__ as _name

sys.modules[__name__] = sys.modules[_name]
