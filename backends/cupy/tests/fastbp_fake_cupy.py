"""A stand-in for CuPy built on NumPy, to test the CUDA backend's Python logic without a GPU.

It keeps the rules of the real thing that the backend must respect: arrays of its own type
(with ``.device.id``; indexing and reductions give 0-d arrays, ``asarray`` of host data copies),
``cublas.gemm``'s semantics, ``ElementwiseKernel`` operations (compiled on the first call, which
can be made to fail as without CUDA headers), raw kernels (run by :mod:`fastbp_cupy.emulator`),
and stream capture into graphs, during which cuBLAS raises ``NotImplementedError`` (as CuPy does)
and nothing may allocate. :class:`Counts` counts the arrays the code under test allocates. It
proves the control flow, the layouts and the arithmetic of the backend; only a GPU proves the
CUDA code itself.

``benchmarks/gpu/check.sh --dry-run`` makes ``import cupy`` answer a :class:`FakeCuPy` in every
stage's process, so the whole GPU check runs on a machine without one.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
from fastbp_cupy import emulator


class CUDARuntimeError(RuntimeError):
    """Like ``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


class OutOfMemoryError(MemoryError):
    """Like ``cupy.cuda.memory.OutOfMemoryError`` (a ``MemoryError``)."""


class FakePool:
    """``cupy.get_default_memory_pool()``: nothing cached, counts ``free_all_blocks``."""

    def __init__(self) -> None:
        self.released = 0

    def free_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        self.released += 1


class Counts:
    """Arrays the code under test allocated on the fake device (``allocations``): new arrays from
    ``cupy.*`` functions and ufuncs without ``out=``. Work done inside the fake's own kernels,
    cuBLAS and graphs (``internal``) is not the caller's and is not counted."""

    allocations = 0
    internal = 0


class FakeArray(np.ndarray):
    """A 'device array': a NumPy array of its own type, on fake GPU ``device_id``."""

    device_id = 0

    def __getitem__(self, idx: Any) -> Any:
        out = super().__getitem__(idx)
        if isinstance(out, np.generic):  # CuPy indexes to 0-d device arrays, not scalars
            out = np.asarray(out).view(FakeArray)
            out.device_id = self.device_id
        return out

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        outs = kwargs.get("out")
        if outs is None and Counts.internal == 0:
            Counts.allocations += 1
        plain = [np.asarray(x) if isinstance(x, FakeArray) else x for x in inputs]
        if outs is not None:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, FakeArray) else o for o in outs)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if outs is not None:
            return outs[0] if len(outs) == 1 else outs
        if isinstance(result, np.generic):  # CuPy's reductions give 0-d device arrays
            result = np.asarray(result)
        if isinstance(result, np.ndarray):
            view = result.view(FakeArray)
            view.device_id = self.device_id
            return view
        return result

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
        self.trace: list[str] = []  # events, synchronizes and cuBLAS calls, in order
        # null: cuBLAS, kernels, graphs and take count their calls and compute nothing (what
        # is left is the host work of the code under test: benchmarks/gpu/launch_count.py)
        self.null = False
        self.fail_compile: str | None = None  # RawModule.get_function raises this
        self.fail_kernels: str | None = None  # every ElementwiseKernel call raises this
        self.fail_capture: str | None = None  # Stream.end_capture raises this
        self.pool = FakePool()
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
            Device=lambda index=0: FakeDevice(index, fake),
            Stream=lambda non_blocking=False: FakeStream(fake),
            Event=lambda *args, **kwargs: FakeEvent(fake),
            get_elapsed_time=lambda start, end: (end.at - start.at) * 1e3,
            nvrtc=types.SimpleNamespace(getVersion=lambda: (12, 9)),
            memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError))
        self.cublas = types.SimpleNamespace(gemm=self._gemm)

        class ElementwiseKernel(FakeElementwise):
            module = fake

        class RawModule(FakeRawModule):
            module = fake

        self.ElementwiseKernel = ElementwiseKernel
        self.RawModule = RawModule
        self.RawKernel = lambda code, name, **kwargs: RawModule(code).get_function(name)

    # -- NumPy underneath, arrays as FakeArray ---------------------------------------------
    def __getattr__(self, name: str) -> Any:
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.capturing is not None:
                raise RuntimeError(f"cupy.{name} called during stream capture")
            out = fn(*args, **kwargs)
            if isinstance(out, np.generic):  # CuPy's reductions give 0-d device arrays
                out = np.asarray(out)
            if not isinstance(out, np.ndarray):
                return out
            if "out" not in kwargs and out.base is None and Counts.internal == 0:
                Counts.allocations += 1
            return out.view(FakeArray)

        return wrapped

    def asarray(self, a: Any, dtype: Any = None, order: Any = None) -> FakeArray:
        """Like ``cupy.asarray``: a device array as it is, anything else copied to the device."""
        if self.capturing is not None:
            raise RuntimeError("cupy.asarray called during stream capture")
        if isinstance(a, FakeArray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        if Counts.internal == 0:
            Counts.allocations += 1
        return np.array(a, dtype=dtype, order=order or "K", copy=True).view(FakeArray)

    def take(self, *args: Any, **kwargs: Any) -> Any:
        """``cupy.take`` (counted; with ``null`` and ``out=``, nothing gathered)."""
        self.calls["take"] = self.calls.get("take", 0) + 1
        if self.null and kwargs.get("out") is not None:
            return kwargs["out"]
        return self.__getattr__("take")(*args, **kwargs)

    def get_default_memory_pool(self) -> FakePool:
        return self.pool

    def asnumpy(self, a: Any) -> np.ndarray:
        return np.array(a, copy=True).view(np.ndarray)

    def _gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any = None,
              alpha: float = 1.0, beta: float = 0.0) -> Any:
        if self.capturing is not None:  # what CuPy does (its test_stream_capture_failure_cublas)
            raise NotImplementedError("calling cuBLAS API during stream capture is currently "
                                      "unsupported")
        self.calls["gemm"] = self.calls.get("gemm", 0) + 1
        self.trace.append("gemm")
        if self.null:
            return out
        Counts.internal += 1
        try:
            return self._gemm_numpy(transa, transb, a, b, out, alpha, beta)
        finally:
            Counts.internal -= 1

    @staticmethod
    def _gemm_numpy(transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float,
                    beta: float) -> Any:
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


def run_internally(name: str, grid: tuple, block: tuple, args: tuple) -> None:
    """A raw kernel on the emulator; its NumPy work is not the caller's allocations."""
    Counts.internal += 1
    try:
        emulator.run_kernel(name, grid, block, args)
    finally:
        Counts.internal -= 1


class FakeDevice:
    def __init__(self, index: int = 0, module: FakeCuPy | None = None) -> None:
        self.id, self.module = index, module

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        if self.module is not None:
            self.module.calls["synchronize"] = self.module.calls.get("synchronize", 0) + 1
            self.module.trace.append("synchronize")


class FakeEvent:
    """``cupy.cuda.Event``: ``record`` notes the host's clock (the fake runs work at once) and
    the call in ``module.trace``; ``get_elapsed_time`` gives the milliseconds between two."""

    def __init__(self, module: FakeCuPy) -> None:
        self.module, self.at, self.done = module, 0.0, False

    def record(self, stream: Any = None) -> None:
        import time

        self.at, self.done = time.perf_counter(), True
        self.module.trace.append("event")

    def synchronize(self) -> None:
        self.module.trace.append("event-synchronize")


class FakeElementwise:
    """Runs an ElementwiseKernel's operation ``lhs = expr`` with NumPy broadcasting."""

    module: FakeCuPy

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.names = [p.split()[-1] for p in f"{in_params}, {out_params}".split(",")]
        lhs, expr = operation.split("=", 1)
        self.lhs = lhs.strip()
        self.expr = expr.strip().replace("T(1)", "1.0").replace("T(0)", "0.0")
        compile(self.expr, name, "eval")

    def __call__(self, *args: Any) -> None:
        if self.module.capturing is not None:
            raise RuntimeError("ElementwiseKernel called during capture")
        if self.module.fail_kernels:  # CuPy compiles on the first call
            raise RuntimeError(self.module.fail_kernels)
        self.module.calls["elementwise"] = self.module.calls.get("elementwise", 0) + 1
        if self.module.null:
            return args[-1]
        env = {n: (np.asarray(a) if isinstance(a, np.ndarray) else a)
               for n, a in zip(self.names, args)}
        functions = {"exp": np.exp, "tanh": np.tanh, "fmax": np.maximum,
                     "T": lambda v: v}  # T(bool): a 0/1 factor, in the other operand's dtype
        value = eval(self.expr, {"__builtins__": {}, **functions}, env)  # noqa: S307
        target = args[self.names.index(self.lhs)]
        np.asarray(target)[...] = value
        return target


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
            fake.calls["raw"] = fake.calls.get("raw", 0) + 1
            if fake.capturing is not None:
                fake.capturing.append((name, grid, block, args))
            elif not fake.null:
                run_internally(name, grid, block, args)

        return kernel


class FakeGraph:
    def __init__(self, module: FakeCuPy, launches: list) -> None:
        self.module, self.launches = module, launches

    def launch(self, stream: Any = None) -> None:
        self.module.calls["graph"] = self.module.calls.get("graph", 0) + 1
        self.module.calls["graph nodes"] = (self.module.calls.get("graph nodes", 0)
                                            + len(self.launches))
        if self.module.null:
            return
        for name, grid, block, args in self.launches:
            run_internally(name, grid, block, args)


class FakeStream:
    def __init__(self, module: FakeCuPy) -> None:
        self.module = module

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def begin_capture(self) -> None:
        assert self.module.capturing is None
        self.module.calls["capture"] = self.module.calls.get("capture", 0) + 1
        self.module.capturing = []

    def end_capture(self) -> FakeGraph:
        launches, self.module.capturing = self.module.capturing, None
        if self.module.fail_capture:
            raise RuntimeError(self.module.fail_capture)
        return FakeGraph(self.module, launches)

    def synchronize(self) -> None:
        pass


def install(monkeypatch: Any, **kwargs: Any) -> FakeCuPy:
    """Put a :class:`FakeCuPy` where ``import cupy`` finds it, with fresh kernel caches."""
    from fastbp_cupy import kernels

    fake = FakeCuPy(**kwargs)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(Counts, "allocations", 0)
    monkeypatch.setattr(Counts, "internal", 0)
    monkeypatch.setattr(kernels, "_elementwise_cache", {})
    monkeypatch.setattr(kernels, "_module_cache", {})
    monkeypatch.setattr(kernels, "_function_cache", {})
    return fake
