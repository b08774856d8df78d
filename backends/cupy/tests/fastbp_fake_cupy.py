"""A stand-in for CuPy built on NumPy, to test the CUDA backend's Python logic without a GPU.

It keeps the rules of the real thing that the backend must respect: arrays of its own type
(with ``.device.id``), ``cublas.gemm``'s semantics, ``ElementwiseKernel`` operations, raw kernels
(run by :mod:`fastbp_cupy.emulator`), and stream capture into graphs, during which cuBLAS raises
``NotImplementedError`` (as CuPy does) and nothing may allocate. It proves the control flow, the
layouts and the arithmetic of the backend; only a GPU proves the CUDA code itself.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
from fastbp_cupy import emulator


class CUDARuntimeError(RuntimeError):
    """Like ``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


class FakeArray(np.ndarray):
    """A 'device array': a NumPy array of its own type, on fake GPU ``device_id``."""

    device_id = 0

    @property
    def device(self) -> Any:
        return types.SimpleNamespace(id=self.device_id)

    def __array_finalize__(self, obj: Any) -> None:
        self.device_id = getattr(obj, "device_id", 0)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self.device_id)


class FakeCuPy(types.ModuleType):
    """``import cupy`` answers this while a test has put it in ``sys.modules``."""

    def __init__(self, n_gpus: int = 1, no_gpu_error: str | None = None) -> None:
        super().__init__("cupy")
        self.__version__ = "99.0.0-fake"
        self.ndarray = FakeArray
        self.capturing: list | None = None
        self.calls: dict[str, int] = {}
        self.fail_compile: str | None = None
        fake = self

        def get_device_count() -> int:
            if no_gpu_error is not None:
                raise CUDARuntimeError(no_gpu_error)
            return n_gpus

        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(
                getDeviceCount=get_device_count, CUDARuntimeError=CUDARuntimeError,
                memGetInfo=lambda: (70 * 2**30, 80 * 2**30),
                getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0,
                                               "totalGlobalMem": 80 * 2**30},
                runtimeGetVersion=lambda: 12090, driverGetVersion=lambda: 12080),
            Device=FakeDevice, Stream=lambda non_blocking=False: FakeStream(fake),
            nvrtc=types.SimpleNamespace(getVersion=lambda: (12, 9)))
        self.cublas = types.SimpleNamespace(gemm=self._gemm)

        class ElementwiseKernel(FakeElementwise):
            module = fake

        class RawModule(FakeRawModule):
            module = fake

        self.ElementwiseKernel = ElementwiseKernel
        self.RawModule = RawModule

    # -- NumPy underneath, arrays as FakeArray ---------------------------------------------
    def __getattr__(self, name: str) -> Any:
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.capturing is not None:
                raise RuntimeError(f"cupy.{name} called during stream capture")
            out = fn(*args, **kwargs)
            return out.view(FakeArray) if isinstance(out, np.ndarray) else out

        return wrapped

    def asnumpy(self, a: Any) -> np.ndarray:
        return np.array(a, copy=True).view(np.ndarray)

    def _gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any = None,
              alpha: float = 1.0, beta: float = 0.0) -> Any:
        if self.capturing is not None:  # what CuPy does (its test_stream_capture_failure_cublas)
            raise NotImplementedError("calling cuBLAS API during stream capture is currently "
                                      "unsupported")
        self.calls["gemm"] = self.calls.get("gemm", 0) + 1
        assert a.ndim == b.ndim == 2 and a.dtype == b.dtype and out.dtype == a.dtype
        opa = a if transa == "N" else a.T
        opb = b if transb == "N" else b.T
        assert opa.shape[1] == opb.shape[0] and out.shape == (opa.shape[0], opb.shape[1])
        prod = np.asarray(opa) @ np.asarray(opb)
        if beta == 0:
            out[...] = alpha * prod
        else:
            out[...] = alpha * prod + beta * np.asarray(out)
        return out


class FakeDevice:
    def __init__(self, index: int = 0) -> None:
        self.id = index

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        pass


class FakeElementwise:
    """Runs an ElementwiseKernel's operation ``lhs = expr`` with NumPy broadcasting."""

    module: FakeCuPy

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.names = [p.split()[-1] for p in f"{in_params}, {out_params}".split(",")]
        lhs, expr = operation.split("=", 1)
        self.lhs, self.expr = lhs.strip(), expr.strip().replace("T(1)", "1.0")
        compile(self.expr, name, "eval")

    def __call__(self, *args: Any) -> None:
        if self.module.capturing is not None:
            raise RuntimeError("ElementwiseKernel called during capture")
        self.module.calls["elementwise"] = self.module.calls.get("elementwise", 0) + 1
        env = {n: (np.asarray(a) if isinstance(a, np.ndarray) else a)
               for n, a in zip(self.names, args)}
        value = eval(self.expr, {"__builtins__": {}, "exp": np.exp}, env)  # noqa: S307
        target = args[self.names.index(self.lhs)]
        target[...] = value


class FakeRawModule:
    module: FakeCuPy

    def __init__(self, code: str, options: tuple = ()) -> None:
        self.code = code

    def get_function(self, name: str) -> Any:
        if self.module.fail_compile:
            raise RuntimeError(self.module.fail_compile)
        assert name in self.code, name
        fake = self.module

        def kernel(grid: tuple, block: tuple, args: tuple) -> None:
            if fake.capturing is not None:
                fake.capturing.append((name, args))
            else:
                emulator.KERNELS[name](*args)

        return kernel


class FakeGraph:
    def __init__(self, module: FakeCuPy, launches: list) -> None:
        self.module, self.launches = module, launches

    def launch(self, stream: Any = None) -> None:
        self.module.calls["graph"] = self.module.calls.get("graph", 0) + 1
        for name, args in self.launches:
            emulator.KERNELS[name](*args)


class FakeStream:
    def __init__(self, module: FakeCuPy) -> None:
        self.module = module

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def begin_capture(self) -> None:
        assert self.module.capturing is None
        self.module.capturing = []

    def end_capture(self) -> FakeGraph:
        launches, self.module.capturing = self.module.capturing, None
        return FakeGraph(self.module, launches)

    def synchronize(self) -> None:
        pass


def install(monkeypatch: Any, **kwargs: Any) -> FakeCuPy:
    """Put a :class:`FakeCuPy` where ``import cupy`` finds it, with fresh kernel caches."""
    from fastbp_cupy import kernels

    fake = FakeCuPy(**kwargs)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(kernels, "_elementwise_cache", {})
    monkeypatch.setattr(kernels, "_module_cache", {})
    return fake
