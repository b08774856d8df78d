"""The built-in ``cpu`` device and how the CPU goes fast, behind one declared module.

This package's ``__all__`` is the whole public face of the CPU speed internals: the names a CPU
device plugin (the compiled ``cpu-jit`` epoch, :mod:`fastbp_numba`) may use, and the only module
of this package it may import (an import-linter contract in ``pyproject.toml``). The modules
behind it are free to change:

- :class:`NumpyBackend`: NumPy for elementwise passes, its own epoch loop (:mod:`.epoch`);
- :mod:`.cblas`: a CBLAS ``?gemm`` called directly (MKL, else NumPy's OpenBLAS):
  :func:`find_cblas`, :func:`load_cblas`, :func:`cblas_choice`;
- :mod:`.blas_threads`: how many BLAS threads a step of ``W`` entries ``Σ n_l n_{l-1}`` times
  ``m`` rows gets: :func:`step_work`, :func:`threaded`, :func:`library_threads`,
  :func:`one_thread`;
- :mod:`.prefetch`: rows of the next mini-batches gathered ahead on another core:
  :func:`cores`, :func:`prefetch_enabled`, :func:`prefetch_mode`, :func:`chunk_rows`,
  :func:`chunk_buffers`, :func:`prefetch_chunks`;
- :mod:`.halves`: the helper thread that takes half of every step: :func:`half_helper`.

The functions call their module when called (not a copy taken at import), so a test that
replaces ``prefetch.cores`` or ``prefetch.mode`` changes what a plugin sees too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from . import cblas, halves, prefetch
from .backend import NumpyBackend
from .blas_threads import library_threads, one_thread, step_work, threaded

__all__ = [
    "NumpyBackend", "cblas_choice", "chunk_buffers", "chunk_rows", "cores", "find_cblas",
    "half_helper", "library_threads", "load_cblas", "one_thread", "prefetch_chunks",
    "prefetch_enabled", "prefetch_mode", "step_work", "threaded",
]


def find_cblas() -> cblas.Cblas | None:
    """The CBLAS library the CPU devices call (:func:`.cblas.find`), or None for SciPy's BLAS."""
    return cblas.find()


def load_cblas(name: str) -> cblas.Cblas | None:
    """The CBLAS library ``name`` (``mkl`` or ``openblas``) when it loads here, else None."""
    return cblas.load(name)


def cblas_choice() -> str:
    """The library asked for by ``FASTBP_BLAS`` (``auto`` when unset)."""
    return cblas.choice()


def cores() -> int:
    """The cores this process may run on (:func:`.prefetch.cores`)."""
    return prefetch.cores()


def prefetch_enabled() -> bool:
    """Whether gathering ahead is allowed (``FASTBP_PREFETCH``)."""
    return prefetch.enabled()


def prefetch_mode(sizes: Sequence[int], m: int, threads: bool | None = None,
                  rows: int | None = None) -> str | None:
    """How an epoch of ``rows`` rows in batches of ``m`` gathers ahead (:func:`.prefetch.mode`):
    ``"overlap"``, ``"parallel"`` or None (not at all)."""
    return prefetch.mode(sizes, m, threads=threads, rows=rows)


def chunk_rows(m: int) -> int:
    """Rows per gathered chunk, a whole number of batches of ``m``."""
    return prefetch.chunk_rows(m)


def chunk_buffers(backend: Any, plan: Any) -> prefetch.ChunkBuffers:
    """The two chunk buffers of ``plan``'s epoch, made once in the network's cache."""
    return prefetch.chunk_buffers(backend, plan)


def prefetch_chunks(xs: np.ndarray, ys: np.ndarray, order: np.ndarray,
                    buffers: prefetch.ChunkBuffers, parallel: bool = False
                    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """The epoch's rows ``xs[order]``, ``ys[order]`` in chunks, the next gathered while the
    caller trains on this one (:func:`.prefetch.chunks`)."""
    return prefetch.chunks(xs, ys, order, buffers, parallel=parallel)


def half_helper() -> AbstractContextManager[Callable[..., Callable[[], None]]]:
    """The kept helper thread for an epoch split in two halves (:func:`.halves.helper`)."""
    return halves.helper()
