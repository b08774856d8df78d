"""Kept for code that imports ``fastbp.backend``: the interface lives in :mod:`fastbp.devices`,
the ``cpu`` device in :mod:`fastbp.devices.cpu`."""

from .devices.backend import DTYPES, Array, Backend, array_device, check_dtype
from .devices.cpu.backend import NumpyBackend, blas_description, cpu_model

__all__ = ["DTYPES", "Array", "Backend", "NumpyBackend", "array_device", "blas_description",
           "check_dtype", "cpu_model"]
