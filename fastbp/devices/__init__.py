"""Devices: the :class:`Backend` interface, the registry that turns a device string into a
backend (``FASTBP_DEVICE``, ``use_device``, the ``fastbp.backends`` entry points), and the
built-in ``cpu`` device (:mod:`fastbp.devices.cpu`).

A plugin subclasses :class:`Backend` (``from fastbp.devices import Backend``) and registers it
under the entry-point group ``fastbp.backends``; :mod:`fastbp.testing` is the suite it runs.
"""

from .backend import DTYPES, Array, Backend, array_device, check_dtype
from .cpu import NumpyBackend
from .registry import (
    DEFAULT_DEVICE,
    ENTRY_POINT_GROUP,
    ENV_VAR,
    SHIPPED_PLUGINS,
    BackendReport,
    backend_class,
    backend_names,
    parse_device,
    probe_all,
    register_backend,
    requested_device,
    resolve,
    use_device,
)

__all__ = [
    "DEFAULT_DEVICE", "DTYPES", "ENTRY_POINT_GROUP", "ENV_VAR", "SHIPPED_PLUGINS", "Array",
    "Backend", "BackendReport", "NumpyBackend", "array_device", "backend_class",
    "backend_names", "check_dtype", "parse_device", "probe_all", "register_backend",
    "requested_device", "resolve", "use_device",
]
