"""Kept for code that imports ``fastbp.distributed``: the module is
:mod:`fastbp.parallel.distributed`."""

import sys

from .parallel.distributed import __name__ as _name

sys.modules[__name__] = sys.modules[_name]
