"""The machine-level pieces the compiled epochs call, compiled into their callers: the column-
major GEMM through a CBLAS function pointer (or SciPy's BLAS), the SSE control register
(flush-to-zero, x86), and the atomics and the barrier of the two-thread epoch.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.linalg import ensure_blas

from .neurons import JIT

ensure_blas()

CACHED: Any = {"cache": True}  # the overload's compile options (Numba's stubs omit "cache")
_N = ord("N")
_T = ord("T")
_COL_MAJOR, _NO_TRANS, _TRANS = 102, 111, 112  # CBLAS enumerations


def _xxgemm(dtype: types.Type) -> types.ExternalFunction:
    """``numba_xxgemm(kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb, *beta, *c, ldc)``."""
    ptr = types.CPointer(dtype)
    sig = types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                     ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp)
    return types.ExternalFunction("numba_xxgemm", sig)


def gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal, blas):
    """Column-major BLAS GEMM: ``C ← α op(A) op(B) + β C`` (``scal`` holds α and β).

    ``blas`` is a CBLAS ``?gemm`` function pointer (:func:`fastbp.devices.cpu.find_cblas`: MKL or
    NumPy's OpenBLAS), or None for the BLAS SciPy ships."""
    raise NotImplementedError  # only the compiled overload below runs


@overload(gemm, jit_options=CACHED)
def _gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal, blas):
    if not isinstance(blas, types.NoneType):

        def direct(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal, blas):
            blas(_COL_MAJOR, _NO_TRANS if transa == _N else _TRANS,
                 _NO_TRANS if transb == _N else _TRANS, m, n, k, alpha, a.ctypes, lda,
                 b.ctypes, ldb, beta, c.ctypes, ldc)

        return direct
    fn = _xxgemm(a.dtype)
    kind = ord("s") if a.dtype == types.float32 else ord("d")

    def impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scal, blas):
        scal[0] = alpha
        scal[1] = beta
        fn(kind, transa, transb, m, n, k, scal[0:].ctypes, a.ctypes, lda, b.ctypes, ldb,
           scal[1:].ctypes, c.ctypes, ldc)

    return impl


# -- flush-to-zero --------------------------------------------------------------------------
FTZ_DAZ = 0x8040  # MXCSR bits: flush subnormal results to zero, treat subnormal inputs as zero

if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):

    def _mxcsr_call(builder, name, ptr):
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [builder.bitcast(ptr, ir.IntType(8).as_pointer())])

    @intrinsic
    def get_mxcsr(typingctx):
        """The SSE control and status register of this thread."""

        def codegen(context, builder, sig, args):
            ptr = cgutils.alloca_once(builder, ir.IntType(32))
            _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", ptr)
            return builder.load(ptr)

        return types.uint32(), codegen

    @intrinsic
    def set_mxcsr(typingctx, value):
        """Load ``value`` into the SSE control and status register of this thread."""

        def codegen(context, builder, sig, args):
            ptr = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)) if args[0].type.width > 32
                          else args[0], ptr)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", ptr)
            return context.get_dummy_value()

        return types.void(value), codegen

else:  # other CPUs: no control register to set; flush() alone keeps subnormals out

    @njit(cache=True)
    def get_mxcsr():
        return np.uint32(0)

    @njit(cache=True)
    def set_mxcsr(value):
        pass


# -- two threads, one epoch ---------------------------------------------------------------
@intrinsic
def atomic_add(typingctx, ary, value):
    """``ary[0] += value`` as one atomic read-modify-write (int64 array); returns the old value."""

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(arr.data, [ir.Constant(ir.IntType(64), 0)])
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return types.int64(ary, types.int64), codegen


@intrinsic
def atomic_load(typingctx, ary):
    """``ary[0]``, read atomically (int64 array): another thread's latest store."""

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(arr.data, [ir.Constant(ir.IntType(64), 0)])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(ary), codegen


# The C library's sched_yield, called by name (so the compiled code stays cacheable).
sched_yield = types.ExternalFunction("sched_yield", types.int32())
# Spins before a waiting thread yields its core: about a microsecond of polling, enough for a
# partner that is running; a partner that is not (another process has its core) gets the core.
BARRIER_SPINS = 2000


@njit(**JIT)
def barrier(sync, threads, count):
    """Wait until ``threads`` threads have each arrived ``count`` times (``sync[0]`` counts
    every arrival, and never goes back). Spins :data:`BARRIER_SPINS` times, then yields the core
    on every poll, so a busy machine never turns the wait into a spin against the partner.
    Returns how many times this thread yielded (the planner reads a busy machine from it)."""
    atomic_add(sync, np.int64(1))
    target = threads * count
    spins = 0
    yields = 0
    while atomic_load(sync) < target:
        spins += 1
        if spins > BARRIER_SPINS:
            sched_yield()
            yields += 1
    return yields
