"""Choosing a device: the ``FASTBP_DEVICE`` grammar, the backend registry and ``use_device``.

A device string is ``cpu``, ``cuda``, ``cuda:N``, ``auto``, or a plugged-in backend's ``name`` or
``name:N``. Precedence: an explicit argument, then the innermost ``use_device`` block, then
``$FASTBP_DEVICE`` (read when a device is first needed, never cached), then ``cpu``.

Backends are registered under the entry-point group ``fastbp.backends``: each entry point loads a
:class:`~fastbp.devices.backend.Backend` subclass, constructed as ``cls(dtype=..., index=...)``.
:func:`register_backend` does the same in code.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator

from ..errors import DeviceError
from .backend import Backend
from .cpu.backend import NumpyBackend

log = logging.getLogger("fastbp")

ENTRY_POINT_GROUP = "fastbp.backends"
ENV_VAR = "FASTBP_DEVICE"
# Without a device argument, use_device or $FASTBP_DEVICE: the fastest device that works here.
DEFAULT_DEVICE = "auto"

# Devices that ship in this repository's backends/ folder: what to install when one is missing.
CUDA_INSTALL = 'pip install -e "./backends/cupy[cuda12]"'
"""The one command that adds the cuda device (from a fastbp checkout; ``[cuda13]`` for a CUDA
13 driver), said the same way by the README, ``fastbp devices`` and the GPU tests' skips."""
SHIPPED_PLUGINS = {
    "cuda": f"{CUDA_INSTALL}  (from a fastbp checkout; [cuda13] with a CUDA 13 driver)",
    "array-api": 'pip install "./backends/array_api"  (from a fastbp checkout)',
    "cpu-jit": "pip install numba  (a dependency of fastbp; cpu-jit ships with it)",
}

_GRAMMAR = re.compile(r"^(?P<name>[a-z][a-z0-9_\-]*)(?::(?P<index>\d+))?$")
_registered: dict[str, Callable[..., Backend]] = {"cpu": NumpyBackend}
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastbp_device", default=None)


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Register ``factory`` (a Backend subclass or callable ``(dtype=, index=)``) as ``name``."""
    if not isinstance(name, str) or not _GRAMMAR.match(name) or ":" in name or name == "auto":
        raise DeviceError(
            f"backend name {name!r} is not valid: use lowercase letters, digits, - and _")
    if not callable(factory):
        raise DeviceError(f"backend {name!r}: the factory must be a Backend subclass or a "
                          f"callable (dtype=, index=), got {factory!r}")
    _registered[name] = factory


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every backend name known here: built in, registered in code, or installed as a plugin."""
    return sorted(set(_registered) | set(_entry_points()))


def backend_class(name: str) -> Callable[..., Backend]:
    """The factory registered as ``name``; loads the plugin's entry point if needed."""
    if name in _registered:
        return _registered[name]
    eps = _entry_points()
    if name in eps:
        try:
            factory = eps[name].load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the core
            raise DeviceError(f"the backend plugin {name!r} failed to load: {exc}") from exc
        _registered[name] = factory
        return factory
    if name in SHIPPED_PLUGINS:
        raise DeviceError(
            f"device {name!r} needs its plugin, which is not installed: {SHIPPED_PLUGINS[name]}"
        )
    available = ", ".join(backend_names() + ["auto"])
    raise DeviceError(f"unknown device {name!r}; available: {available}")


def parse_device(spec: str) -> tuple[str, int]:
    """Split ``name[:N]`` into ``(name, N)``; raise ``DeviceError`` on a malformed string."""
    if not isinstance(spec, str):
        raise DeviceError(f"a device is a string like 'cpu' or 'cuda:0', not {spec!r}")
    m = _GRAMMAR.match(spec.strip().lower())
    if not m:
        raise DeviceError(
            f"malformed device string {spec!r}: expected 'cpu', 'cuda', 'cuda:N', 'auto' "
            "or a plugged-in backend's 'name' / 'name:N'"
        )
    return m["name"], int(m["index"] or 0)


def requested_device(device: str | None = None) -> str:
    """The device string in force: argument > ``use_device`` > ``$FASTBP_DEVICE`` > ``auto``."""
    for spec in (device, _current.get(), os.environ.get(ENV_VAR) or None):
        if spec is not None:
            return spec
    return DEFAULT_DEVICE


def resolve(device: str | Backend | None = None, dtype: str = "float32") -> Backend:
    """The backend for ``device`` (see :func:`requested_device`) computing in ``dtype``."""
    if isinstance(device, Backend):
        make: Callable[..., Backend] = type(device)  # a concrete subclass: (dtype=, index=)
        return device if device.dtype == dtype else make(dtype=dtype, index=device.index)
    spec = requested_device(device)
    if device is None and _current.get() is None and not os.environ.get(ENV_VAR):
        return _auto(dtype, quiet=True)  # the default: said in the log, quietly
    if device is None and _current.get() is None and spec == os.environ.get(ENV_VAR):
        try:  # from the environment: say so, the user may not know it is set
            return _resolve(spec, dtype)
        except DeviceError as exc:
            raise DeviceError(f"{ENV_VAR}={spec!r}: {exc}") from exc
    return _resolve(spec, dtype)


def check_env_device() -> None:
    """``$FASTBP_DEVICE``, if set, is a well-formed device with a known backend
    (``DeviceError`` naming the variable otherwise); nothing is started."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    try:
        check_spec(spec)
    except DeviceError as exc:
        raise DeviceError(f"{ENV_VAR}={spec!r}: {exc}") from exc


def check_spec(spec: str) -> None:
    """``DeviceError`` unless ``spec`` is well formed and names a known backend (or ``auto``);
    whether the device starts here is not tried."""
    name, index = parse_device(spec)
    if name == "cpu" and index:
        raise DeviceError(f"device {spec!r}: the cpu device has no index; say 'cpu'")
    if name != "auto":
        backend_class(name)


def _resolve(spec: str, dtype: str) -> Backend:
    name, index = parse_device(spec)
    if name == "auto":
        return _auto(dtype)
    if name == "gpu" and name not in _registered and name not in _entry_points():
        raise DeviceError("malformed device string 'gpu': say 'cuda' or 'cuda:N' for an NVIDIA GPU")
    if name == "cpu" and index:
        raise DeviceError(f"device {spec!r}: the cpu device has no index; say 'cpu'")
    factory = backend_class(name)
    try:
        return factory(dtype=dtype, index=index)
    except DeviceError as exc:
        clearer = no_driver_reason(str(exc))
        if clearer is None:
            raise
        raise DeviceError(clearer) from exc


def _auto(dtype: str, quiet: bool = False) -> Backend:
    """The first GPU that works, else the compiled CPU device ``cpu-jit`` (else ``cpu``, where
    Numba cannot run or the dtype is float16); says which, and why not a GPU, in one log line
    (a warning for an explicit ``auto``, at info level for the default)."""
    say = log.info if quiet else log.warning
    try:
        backend = backend_class("cuda")(dtype=dtype, index=0)
    except DeviceError as exc:
        no_gpu = str(exc)
    else:
        say("fastbp: device 'auto' chose %s", backend.device)
        return backend
    driver = nvidia_driver_present()
    try:
        backend = backend_class("cpu-jit")(dtype=dtype, index=0)
    except Exception:  # noqa: BLE001 - not installed or broken: the built-in CPU device
        backend = NumpyBackend(dtype=dtype)
    if not driver:  # no GPU could run here: nothing to install, nothing to hint
        say("fastbp: device 'auto' chose %s (no NVIDIA GPU here)", backend.device)
    elif "gpu hint" in _said:
        say("fastbp: device 'auto' chose %s (no usable GPU)", backend.device)
    else:  # an NVIDIA driver, but the GPU cannot be used: why, once per process
        _said.add("gpu hint")
        say("fastbp: device 'auto' chose %s (no usable GPU: %s)", backend.device, no_gpu)
    return backend


_said: set[str] = set()


@contextlib.contextmanager
def use_device(device: str) -> Iterator[str]:
    """Within the block, ``Network`` and the CLI use ``device`` unless given one explicitly."""
    parse_device(device)  # fail early on a malformed string
    token = _current.set(device)
    try:
        yield device
    finally:
        _current.reset(token)


def nvidia_driver_present() -> bool:
    """Whether the NVIDIA driver's library (``libcuda.so.1``, ``nvcuda.dll``) loads here."""
    import ctypes
    import sys

    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def no_driver_reason(reason: str) -> str | None:
    """CUDA says "driver version is insufficient" also where there is no NVIDIA driver at all;
    there, the clearer reason (else ``None``: the reason stands)."""
    if "insufficient" not in reason.lower() or nvidia_driver_present():
        return None
    return ("device 'cuda': this machine has no NVIDIA driver (libcuda.so.1 does not load), so "
            "CUDA cannot run here; the cuda device needs an NVIDIA GPU with its driver "
            "(nvidia-smi shows both)")


@dataclass
class BackendReport:
    """What ``fastbp devices`` says about one backend: its devices, or why it cannot run."""

    name: str
    source: str  # "built in", "registered in code", "plugin <dist> <version>", "not installed"
    devices: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _source(name: str, eps: dict[str, metadata.EntryPoint]) -> str:
    if name in eps:
        dist = getattr(eps[name], "dist", None)
        return f"plugin {dist.name} {dist.version}" if dist is not None else "plugin"
    if name in _registered:
        return "built in" if _registered[name] is NumpyBackend else "registered in code"
    return "not installed"


def probe_all() -> list[BackendReport]:
    """Every backend known here, and the shipped plugins that are not installed, each with the
    devices it can see (``Backend.probe``) or the reason it cannot run here."""
    eps = _entry_points()
    names = backend_names()
    reports = []
    names = sorted(names, key=lambda n: (n != "cpu", n))  # the built-in device first
    for name in names + sorted(set(SHIPPED_PLUGINS) - set(names)):
        report = BackendReport(name, _source(name, eps))
        try:
            factory = backend_class(name)
            probe = getattr(factory, "probe", None)
            report.devices = (probe() if callable(probe)
                              else [factory(dtype="float32", index=0).describe()])
        except DeviceError as exc:
            report.error = no_driver_reason(str(exc)) or str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not raised
            report.error = f"the backend failed: {type(exc).__name__}: {exc}"
        reports.append(report)
    return reports

