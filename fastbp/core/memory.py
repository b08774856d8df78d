"""Out of memory as a :class:`~fastbp.errors.DeviceError` that says how much was asked, what is
free, and which batch size would fit.

One step of batch size ``m`` needs, per layer ``l = 2..L``, ``a^l``, ``δ^l`` and a scratch of
``n_l × m`` each, the gathered batch ``(m, n_1 + n_L)``, and the gradients ``∂C/∂W^l``, ``∂C/∂b^l``:
``itemsize · (m · (3 Σ_l n_l + n_1 + n_L) + Σ_l n_l (n_{l-1} + 1))`` bytes.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DeviceError


def workspace_bytes(sizes: Sequence[int], m: int, itemsize: int) -> int:
    """The bytes of the work buffers for one step of batch size ``m`` (see the module)."""
    return itemsize * (m * per_sample_items(sizes) + fixed_items(sizes))


def per_sample_items(sizes: Sequence[int]) -> int:
    return 3 * sum(sizes[1:]) + sizes[0] + sizes[-1]


def fixed_items(sizes: Sequence[int]) -> int:
    return sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))


def free_bytes(backend: Any) -> int | None:
    """Memory free on ``backend``'s device in bytes (its ``free_bytes()``), or ``None`` if it
    cannot tell; a failing probe never hides the error being reported."""
    try:
        return backend.free_bytes()
    except Exception:  # noqa: BLE001 - a failing probe must not hide the real error
        return None


def host_available() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo``, else free physical pages; ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n: int | None) -> str:
    """``n`` bytes as ``1.23 GB (1,234,567,890 bytes)``."""
    if n is None:
        return "unknown"
    value, unit = float(n), "bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):  # noqa: B007 - the last one is used
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{n:,} bytes" if unit == "bytes" else f"{value:.3g} {unit} ({n:,} bytes)"


def out_of_memory(backend: Any, sizes: Sequence[int], m: int, what: str | None = None,
                  asked: int | None = None, advice: str | None = None) -> DeviceError:
    """The ``DeviceError`` for a failed allocation of ``what`` (default: the work buffers for a
    batch of ``m``), ``asked`` bytes (default: :func:`workspace_bytes`); ``advice`` replaces the
    suggested batch size."""
    itemsize = np.dtype(backend.dtype).itemsize
    if asked is None:
        asked = workspace_bytes(sizes, m, itemsize)
    if what is None:
        what = f"the work buffers for a batch of {m:,} samples"
    free = free_bytes(backend)
    fit = None
    if free is not None:
        fit = int((0.8 * free / itemsize - fixed_items(sizes)) // per_sample_items(sizes))
    if advice is not None:
        pass
    elif fit is not None and fit < 1:
        advice = "the network itself does not fit: use fewer or smaller layers, or another device"
    else:
        suggestion = min(fit, m // 2) if fit is not None else m // 2
        advice = (f"use a smaller batch_size (about {max(1, suggestion):,} or less"
                  + (f"; at most ~{fit:,} fits in what is free" if fit is not None else "") + ")")
    return DeviceError(
        f"out of memory on {backend.device}: {what} (sizes {list(sizes)}, {backend.dtype}) "
        f"need {human(asked)} but {human(free)} is free: {advice}."
    )


@contextlib.contextmanager
def translate_oom(backend: Any, sizes: Sequence[int], m: int, what: str | None = None,
                  asked: int | None = None, advice: str | None = None) -> Iterator[None]:
    """Turn a ``MemoryError`` (CuPy's ``OutOfMemoryError`` is one) inside the block into the
    ``DeviceError`` of :func:`out_of_memory`."""
    try:
        yield
    except MemoryError as exc:
        raise out_of_memory(backend, sizes, m, what, asked, advice) from exc
