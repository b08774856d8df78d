"""The CBLAS GEMM the CPU devices call directly: Intel MKL when it is installed, else the
OpenBLAS that NumPy's wheels ship.

The products of a narrow layer are skinny (``(1000 × 784) · (784 × 30)``), and BLAS libraries
differ most there: on one core of the benchmark machine MKL runs both products of a 30-unit layer
at ~150 GFLOP/s, NumPy's OpenBLAS 0.3.31 at 80–100, SciPy's OpenBLAS 0.3.30 at 45–75
(``benchmarks/results/speed-cpu``). NumPy and SciPy only expose the library they were built
with, so fastbp finds the C entry point ``cblas_?gemm`` itself and calls it through ``ctypes``
(or from compiled code, which takes the same function pointer).

``$FASTBP_BLAS`` (read at each lookup) picks one: ``auto`` (default: ``mkl``, else
``openblas``), ``mkl`` (``pip install mkl``, or ``fastbp[mkl]``), ``openblas`` (NumPy's), or
``scipy`` (no direct calls: the devices use SciPy's BLAS wrappers, as before this module).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, MissingDependency

ENV_VAR = "FASTBP_BLAS"
CHOICES = ("auto", "mkl", "openblas", "scipy")

# CBLAS enumerations (cblas.h)
COL_MAJOR = 102
NO_TRANS = 111
TRANS = 112


@dataclass(frozen=True)
class Cblas:
    """One loaded CBLAS: ``sgemm``/``dgemm`` are ``ctypes`` functions with the C signature
    ``(order, transa, transb, m, n, k, alpha, *A, lda, *B, ldb, beta, *C, ldc)`` (integers of
    ``int_bits`` bits)."""

    name: str  # "mkl" or "openblas"
    path: str
    version: str
    int_bits: int
    sgemm: Any
    dgemm: Any

    def gemm_for(self, dtype: Any) -> Any:
        """``sgemm`` for float32, ``dgemm`` for float64."""
        return self.sgemm if str(dtype) == "float32" else self.dgemm

    def describe(self) -> str:
        return f"{self.name} {self.version} ({os.path.basename(self.path)}, direct CBLAS calls)"

    @contextlib.contextmanager
    def one_thread_here(self) -> Iterator[None]:
        """Within the block, this thread's calls run on one thread. MKL keeps a setting per
        thread (``mkl_set_num_threads_local``); OpenBLAS has only its global one, which the
        caller limits (threadpoolctl)."""
        if self.name != "mkl":
            yield
            return
        lib = _dll(self.path)
        previous = lib.MKL_Set_Num_Threads_Local(1)
        try:
            yield
        finally:
            lib.MKL_Set_Num_Threads_Local(previous)


def choice() -> str:
    """``$FASTBP_BLAS``, checked: one of :data:`CHOICES`."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in CHOICES:
        raise ConfigError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a BLAS fastbp knows; "
                          f"use one of {', '.join(CHOICES)}")
    return value


def find() -> Cblas | None:
    """The CBLAS to call, as ``$FASTBP_BLAS`` asks; None for ``scipy``, or for ``auto`` when
    neither library can be found. Asking for ``mkl`` or ``openblas`` by name when it cannot be
    loaded is an error that says why."""
    want = choice()
    if want == "scipy":
        return None
    if want == "auto":
        return _load("mkl") or _load("openblas")
    lib = _load(want)
    if lib is None:
        hint = "pip install mkl" if want == "mkl" else "NumPy's wheel from PyPI bundles it"
        raise MissingDependency(f"{ENV_VAR}={want}: no {want} library found ({hint}); "
                                f"searched {', '.join(_candidates(want)) or 'nothing'}")
    return lib


def load(name: str) -> Cblas | None:
    """The library ``name`` (``mkl`` or ``openblas``) if it can be loaded here, else None
    (the planner tries each)."""
    return _load(name)


@functools.cache
def _dll(path: str) -> Any:
    """The loaded library at ``path`` (loaded once)."""
    return ctypes.CDLL(path)


@functools.cache
def _load(name: str) -> Cblas | None:
    for path in _candidates(name):
        try:
            return _wrap(name, path, _dll(path))
        except (OSError, AttributeError):
            continue
    return None


def _candidates(name: str) -> list[str]:
    """Library files to try, most likely first."""
    if name == "mkl":
        prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", "")])
        found = [p for pre in prefixes if pre
                 for p in sorted(glob.glob(os.path.join(pre, "lib", "libmkl_rt.so*")))]
        return found + ["libmkl_rt.so.2", "libmkl_rt.so"]
    import numpy as np

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    return sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so")))


def _wrap(name: str, path: str, lib: Any) -> Cblas:
    if name == "mkl":
        bits, sym = 32, "cblas_{}gemm"
        version = _mkl_version(lib)
    else:  # NumPy's OpenBLAS: ILP64 with suffixed names, or the LP64 build with plain ones
        bits = 64 if "64" in os.path.basename(path) else 32
        sym = "scipy_cblas_{}gemm64_" if bits == 64 else "scipy_cblas_{}gemm"
        version = _openblas_version(lib, bits)
    ints = ctypes.c_int64 if bits == 64 else ctypes.c_int
    fns = []
    for kind, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        fn = getattr(lib, sym.format(kind))
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ints, ints, ints, real,
                       ctypes.c_void_p, ints, ctypes.c_void_p, ints, real, ctypes.c_void_p, ints]
        fn.restype = None
        fns.append(fn)
    return Cblas(name, path, version, bits, fns[0], fns[1])


def _mkl_version(lib: Any) -> str:
    buf = ctypes.create_string_buffer(256)
    try:
        lib.MKL_Get_Version_String(buf, len(buf))
    except AttributeError:
        return "MKL"
    text = buf.value.decode(errors="replace")
    # "Intel(R) oneAPI Math Kernel Library Version 2026.2-Product Build ..." -> "2026.2"
    return text.split("Version", 1)[-1].split()[0].split("-")[0] if "Version" in text else text


def _openblas_version(lib: Any, bits: int) -> str:
    fn = getattr(lib, "scipy_openblas_get_config64_" if bits == 64 else "scipy_openblas_get_config",
                 None)
    if fn is None:
        return "OpenBLAS"
    fn.restype = ctypes.c_char_p
    parts = (fn() or b"").decode(errors="replace").split()
    return parts[1] if len(parts) > 1 and parts[0] == "OpenBLAS" else "OpenBLAS"


def description() -> str:
    """The BLAS the CPU devices' training GEMMs call, with its kernel and threads:
    ``"mkl 2026.2 (intel, 2 threads)"``; SciPy's when :func:`find` gives none."""
    lib = find()
    try:
        import scipy.linalg.cython_blas  # noqa: F401 - loads SciPy's BLAS for threadpoolctl
        from threadpoolctl import threadpool_info
    except ImportError:
        return lib.describe() if lib else "SciPy's BLAS (install threadpoolctl to see which)"
    for info in threadpool_info():
        path = info.get("filepath", "")
        ours = (os.path.realpath(lib.path) == os.path.realpath(path) if lib
                else "scipy" in os.path.dirname(path))
        if info.get("user_api") == "blas" and ours:
            kernel = info.get("architecture") or info.get("threading_layer")
            return (f"{info.get('internal_api')} {info.get('version')} ({kernel}, "
                    f"{info.get('num_threads')} threads)")
    return lib.describe() if lib else "SciPy's BLAS"


class FortranGemm:
    """``gemm(alpha, a, b, beta, c, trans_a, trans_b)``: ``c ← α op(a) op(b) + β c`` in place, on
    Fortran-ordered NumPy arrays or column blocks of them, the call signature of SciPy's
    ``?gemm`` (``overwrite_c`` always), made by one direct CBLAS call."""

    def __init__(self, lib: Cblas, dtype: Any) -> None:
        self.fn = lib.gemm_for(dtype)

    def __call__(self, alpha: float, a: Any, b: Any, beta: float, c: Any, trans_a: int = 0,
                 trans_b: int = 0, overwrite_c: int = 1) -> Any:
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        self.fn(COL_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS,
                m, n, k, alpha, a.ctypes.data, _ld(a), b.ctypes.data, _ld(b), beta,
                c.ctypes.data, _ld(c))
        return c


def _ld(a: Any) -> int:
    """The leading dimension of a column-major array (unit stride down a column): a block of
    columns of a larger Fortran array keeps the larger array's."""
    if a.shape[0] > 1 and a.shape[1] > 1 and a.strides[0] != a.itemsize:
        raise ValueError(f"not a column-major block: strides {a.strides}, shape {a.shape}")
    return max(a.strides[1] // a.itemsize, 1) if a.shape[1] > 1 else max(1, a.shape[0])
