"""fastbp-cupy: the ``cuda`` device, fastbp's equations on CUDA GPUs through CuPy.

Registered under the entry-point group ``fastbp.backends``. Importing this package does not
import CuPy: that happens when a ``cuda`` device is built.
"""

from .backend import CuPyBackend, import_cupy

__all__ = ["CuPyBackend", "import_cupy"]
__version__ = "0.1.0"
