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


UNLIMITED = 1 << 60
"""A cgroup v1 limit at or above this is no limit (the kernel writes ~2^63 rounded to pages)."""


def process_limits() -> list[tuple[str, int, int | None]]:
    """The limits on this process's memory besides what the host has free: ``(words, limit,
    room)``, the room being what is left under it (``None`` if unknown). The address-space
    limit (``ulimit -v``, RLIMIT_AS) against the process's size, the cgroup's ``memory.max``
    (v2) or ``memory.limit_in_bytes`` (v1) against its usage, where readable."""
    out: list[tuple[str, int, int | None]] = []
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            size = _status_bytes("VmSize:")
            out.append(("the address-space limit (ulimit -v)", soft,
                        None if size is None else max(0, soft - size)))
    except (ImportError, OSError, ValueError):
        pass
    cgroup = _cgroup_limit()
    if cgroup is not None:
        out.append(cgroup)
    return out


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read(64).strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_limit() -> tuple[str, int, int | None] | None:
    """``("the cgroup's memory.max", limit, room)`` of this process's cgroup, or ``None``."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read(8192).splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2
            files = ("memory.max", "memory.current")
            bases = [f"/sys/fs/cgroup{rel.rstrip('/')}", "/sys/fs/cgroup"]
        elif "memory" in controllers.split(","):  # v1
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            bases = [f"/sys/fs/cgroup/memory{rel.rstrip('/')}", "/sys/fs/cgroup/memory"]
        else:
            continue
        for base in bases:
            limit = _read_int(f"{base}/{files[0]}")
            if limit is not None and limit < UNLIMITED:
                used = _read_int(f"{base}/{files[1]}")
                return (f"the cgroup's {files[0]}", limit,
                        None if used is None else max(0, limit - used))
    return None


def host_room(free: int | None = None) -> tuple[int | None, str]:
    """What this process may still allocate on the host, and in words: the least of ``free``
    (default ``MemAvailable``) and the room under each of :func:`process_limits`."""
    free = host_available() if free is None else free
    words = f"{human(free)} is free"
    room = free
    for name, limit, left in process_limits():
        words += f", and {name} is {short(limit)}" + (
            f" ({short(left)} of it left)" if left is not None else "")
        if left is not None:
            room = left if room is None else min(room, left)
    return room, words


def check_host_room(need: int, what: str, advice: str) -> None:
    """``DeviceError`` before allocating ``need`` bytes of host memory for ``what`` when
    :func:`host_room` says they cannot fit."""
    room, words = host_room()
    if room is not None and need > room:
        raise DeviceError(f"out of memory on the host: {what} need {human(need)} but {words}: "
                          f"{advice}.")


def short(n: int) -> str:
    """``n`` bytes as ``1.23 GB``."""
    return human(n).split(" (")[0]


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
    words = f"{human(free)} is free"
    if getattr(backend, "kind", None) == "cpu":  # host memory: the process's limits count too
        free, words = host_room(free)
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
        f"need {human(asked)} but {words}: {advice}."
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
