"""The raw CUDA kernels of fastbp-cupy, one launch at a time, against NumPy in float64.

Every output buffer starts as NaN (the GEMMs write into a view inside a NaN guard band), so an
element a kernel forgets stays NaN and a write out of bounds shows in the band. Each result is
held to a bound derived from the rounding of its dtype, element by element: a length-``K`` dot
product is within ``γ_K Σ|a||b|`` (``γ_K = K u / (1 − K u)``, ``u`` the unit roundoff) of the
exact one, and each epilogue adds a few ``u`` of its own; a result passes when every element is
within twice its bound. The shapes are the awkward ones: batches of 1, 7, 64, 128 and 129, output
counts ``M·N`` on both sides of 8192, inner dimensions below and above 64, a one-layer network,
one output, operands given as transposed views.

Then whole steps (:class:`fastbp_cupy.graph.StepProgram`, launch by launch) are compared with a
NumPy step in float64, with the tolerance taken from the same NumPy step run in the dtype itself;
and the step captured as a CUDA graph is replayed twice from the same parameters: both replays
must equal each other and the launch-by-launch run bit for bit.

Usage: ``python benchmarks/gpu/kernels_check.py --out kernels.json`` (``--quick``: fewer cases).
Exits 1 when any check fails, 0 when all pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

MODES = {0: "forward", 1: "bp2", 2: "sgd"}
BATCHES = (1, 7, 64, 128, 129)


def unit_roundoff(dtype: str) -> float:
    return float(np.finfo(dtype).eps) / 2


def gamma(k: int, u: float) -> float:
    return k * u / (1 - k * u)


class Checker:
    def __init__(self, cp: Any, quick: bool) -> None:
        from fastbp_cupy import graph as G
        from fastbp_cupy import kernels as K

        self.cp, self.K, self.G, self.quick = cp, K, G, quick
        self.rows: list[dict[str, Any]] = []
        self.rng = np.random.default_rng(0)

    # -- bookkeeping ----------------------------------------------------------------------------
    def record(self, kernel: str, case: str, dtype: str, ok: bool, worst: float,
               note: str = "") -> None:
        self.rows.append({"kernel": kernel, "case": case, "dtype": dtype, "ok": bool(ok),
                          "worst": float(worst), "note": note})
        if not ok:  # the passing ones are in the JSON; the log stays short
            print(f"FAIL {kernel:20} {dtype:8} {case:44} worst {worst:.3g} {note}", flush=True)

    def guarded(self, kernel: str, case: str, dtype: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failing case never stops the rest
            self.record(kernel, case, dtype, False, float("inf"),
                        f"{type(exc).__name__}: {exc}")

    def functions(self, dtype: str) -> dict[str, Any]:
        return self.K.raw_functions(self.cp, "float" if dtype == "float32" else "double", 0)

    def launch(self, dtype: str, item: Any) -> None:
        self.functions(dtype)[item.kernel](item.grid, item.block, item.args)
        self.cp.cuda.Device().synchronize()

    def device(self, a: np.ndarray, transposed: bool = False) -> Any:
        """``a`` on the device, C-ordered, or as the transposed view of a C-ordered copy of
        ``a.T`` (unit stride down the columns)."""
        cp = self.cp
        if transposed:
            return cp.asarray(np.ascontiguousarray(a.T)).T
        return cp.asarray(np.ascontiguousarray(a))

    @staticmethod
    def judge(got: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> tuple[bool, float]:
        """Every element finite and within twice its bound; the worst ``|err| / bound``."""
        if not np.isfinite(got).all():
            return False, float("inf")
        ratio = np.abs(got - ref) / (2 * bound + 1e-300)
        worst = float(ratio.max()) if ratio.size else 0.0
        return worst <= 1.0, worst

    # -- the GEMMs -----------------------------------------------------------------------------
    def gemm_shapes(self) -> list[tuple[int, int, int]]:
        """``(M, N, K)`` of every product of a training step of the networks below, plus the
        edges of the kernels' choice (``M·N`` = 8192, ``K`` = 64)."""
        nets = [[784, 30, 10], [784, 10], [30, 20, 1], [784, 100, 10]]
        batches = BATCHES
        if self.quick:  # small shapes, each path once: the dry run checks the code, not a GPU
            nets, batches = [[30, 20, 1], [40, 10]], (1, 7)
        shapes = set()
        for sizes in nets:
            for m in batches:
                for k, n in zip(sizes[:-1], sizes[1:]):
                    shapes |= {(n, m, k), (k, m, n), (n, k, m)}  # forward, BP2, update
        if not self.quick:
            shapes |= {(64, 128, 64), (64, 129, 64), (64, 128, 63), (128, 64, 100),
                       (8192, 1, 64), (1, 1, 1)}
        return sorted(shapes)

    def check_gemm(self, dtype: str, M: int, N: int, Kd: int, a_t: bool, b_t: bool, mode: int,
                   kernel: str | None) -> None:
        cp, G, rng = self.cp, self.G, self.rng
        u = unit_roundoff(dtype)
        A_h = rng.standard_normal((M, Kd)).astype(dtype)
        B_h = rng.standard_normal((Kd, N)).astype(dtype)
        alpha, beta = 0.25, 0.9
        A, B = self.device(A_h, a_t), self.device(B_h, b_t)
        buf = cp.full((M + 2, N + 2), np.nan, dtype=dtype)
        C = buf[1:M + 1, 1:N + 1]
        if mode == 0:
            v_h = rng.standard_normal((M, 1)).astype(dtype)
        elif mode == 1:
            v_h = rng.random((M, N)).astype(dtype)
        else:
            v_h = rng.standard_normal((M, N)).astype(dtype)  # the C it updates
        if mode == 2:
            C[...] = cp.asarray(v_h)
            v = C
        else:
            v = cp.asarray(v_h)
        item = G.gemm_launch(A, B, C, v, mode, alpha, beta, kernel=kernel)
        self.launch(dtype, item)
        got = cp.asnumpy(buf).astype(np.float64)
        band = np.ones(got.shape, bool)
        band[1:-1, 1:-1] = False
        inner = got[1:-1, 1:-1]
        A64, B64, v64 = (x.astype(np.float64) for x in (A_h, B_h, v_h))
        acc, size = A64 @ B64, np.abs(A64) @ np.abs(B64)
        g = gamma(Kd + 1, u)
        if mode == 0:
            z = acc + v64
            ref = 1 / (1 + np.exp(-z))
            bound = 0.25 * g * (size + np.abs(v64)) + 8 * u * ref
        elif mode == 1:
            s = v64 * (1 - v64)
            ref = acc * s
            bound = g * size * s + 4 * u * np.abs(ref)
        else:
            ref = beta * v64 - alpha * acc
            bound = alpha * g * size + 3 * u * (beta * np.abs(v64) + alpha * np.abs(acc))
        ok, worst = self.judge(inner, ref, bound)
        oob = not np.isnan(got[band]).all()
        case = (f"M={M} N={N} K={Kd} A={'T' if a_t else 'C'} B={'T' if b_t else 'C'} "
                f"{MODES[mode]}")
        self.record(item.kernel, case, dtype, ok and not oob, worst,
                    "wrote outside C" if oob else "")

    def gemms(self, dtype: str) -> None:
        for M, N, Kd in self.gemm_shapes():
            for a_t in (False, True):
                for b_t in (False, True):
                    for mode in ((0, 2) if self.quick else (0, 1, 2)):
                        kernels: list[str | None] = ["fastbp_gemm_tiled"]
                        if Kd >= 2 and not a_t and b_t:  # unit strides along K: dot allowed
                            kernels.append("fastbp_gemm_dot")
                        for kernel in kernels:
                            case = f"{M}x{N}x{Kd}"
                            self.guarded(kernel, case, dtype, lambda kernel=kernel, a_t=a_t,
                                         b_t=b_t, mode=mode, M=M, N=N, Kd=Kd: self.check_gemm(
                                             dtype, M, N, Kd, a_t, b_t, mode, kernel))

    # -- gather, output error, bias update -----------------------------------------------------
    def check_gather(self, dtype: str, n_in: int, n_out: int, m: int) -> None:
        cp, G, rng = self.cp, self.G, self.rng
        n = 3 * m + 5
        xs_h = rng.standard_normal((n, n_in)).astype(dtype)
        ys_h = rng.standard_normal((n, n_out)).astype(dtype)
        order_h = rng.permutation(n).astype(np.int64)
        xs, ys, order = cp.asarray(xs_h), cp.asarray(ys_h), cp.asarray(order_h)
        step = cp.asarray(np.array([2], np.int32))
        x_rows = cp.full((m, n_in), np.nan, dtype=dtype)
        y_rows = cp.full((m, n_out), np.nan, dtype=dtype)
        total = m * (n_in + n_out)
        item = G.Launch("fastbp_gather", (min(-(-total // 256), 1024),), (256,),
                        (xs, ys, order, step, np.int32(m), np.int32(n_in), np.int32(n_out),
                         x_rows, y_rows))
        self.launch(dtype, item)
        rows = order_h[2 * m:3 * m]
        ok = (np.array_equal(cp.asnumpy(x_rows), xs_h[rows])
              and np.array_equal(cp.asnumpy(y_rows), ys_h[rows]))
        self.record("fastbp_gather", f"n_in={n_in} n_out={n_out} m={m}", dtype, ok, 0.0)

    def check_output_error(self, dtype: str, n_out: int, m: int, kind: int) -> None:
        cp, G, K, rng = self.cp, self.G, self.K, self.rng
        u = unit_roundoff(dtype)
        a_h = rng.uniform(0.02, 0.98, (n_out, m)).astype(dtype)
        y_h = np.zeros((m, n_out), dtype=dtype)
        if n_out == 1:
            y_h[:, 0] = rng.integers(0, 2, m)
        else:
            y_h[np.arange(m), rng.integers(0, n_out, m)] = 1
        a, y_rows = cp.asarray(a_h), cp.asarray(y_h)
        delta = cp.full((n_out, m), np.nan, dtype=dtype)
        acc = G.Accumulator(cp)
        acc.cost.fill(0.25)
        item = G.output_error_launch(a, y_rows, delta, kind, acc)
        self.launch(dtype, item)
        self.launch(dtype, item)  # twice: the blocks' ticket must be back at 0
        a64 = a_h.astype(np.float64)
        d = a64 - y_h.T.astype(np.float64)
        if kind == K.COST_QUADRATIC:
            ref = d * a64 * (1 - a64)
            bound = 6 * u * np.abs(ref)
            cost = 0.5 * np.sum(d * d)
            cost_bound = np.sum(2 * u * d * d) + 1e-15 * cost
        else:
            ref = d
            bound = 2 * u * np.abs(d)
            q = 1 - np.abs(d)
            cost = -np.sum(np.log(q))
            cost_bound = np.sum(3 * u * (1 + np.abs(d)) / q + 2 * u * np.abs(np.log(q)))
        ok, worst = self.judge(cp.asnumpy(delta).astype(np.float64), ref, bound)
        got_cost = float(cp.asnumpy(acc.cost)[0])
        cost_ok = abs(got_cost - (0.25 + 2 * cost)) <= 2 * (2 * cost_bound) + 1e-12
        ticket = int(cp.asnumpy(acc.done)[0])
        note = []
        if not cost_ok:
            note.append(f"cost {got_cost!r} vs {0.25 + 2 * cost!r}")
        if ticket != 0:
            note.append(f"ticket left at {ticket}")
        case = (f"n_out={n_out} m={m} {'quadratic' if kind == 0 else 'cross-entropy'} "
                f"blocks={item.grid[0]}")
        self.record("fastbp_output_error", case, dtype, ok and cost_ok and ticket == 0, worst,
                    "; ".join(note))

    def check_bias(self, dtype: str, n: int, m: int) -> None:
        cp, G, rng = self.cp, self.G, self.rng
        u = unit_roundoff(dtype)
        b_h = rng.standard_normal((n, 1)).astype(dtype)
        d_h = rng.standard_normal((n, m)).astype(dtype)
        b, delta = cp.asarray(b_h), cp.asarray(d_h)
        step = cp.asarray(np.array([5], np.int32))
        alpha = 0.3
        item = G.bias_launch(b, delta, alpha, step, True)
        self.launch(dtype, item)
        b64, d64 = b_h.astype(np.float64), d_h.astype(np.float64)
        s = d64.sum(axis=1, keepdims=True)
        ref = b64 - alpha * s
        bound = (alpha * gamma(m, u) * np.abs(d64).sum(axis=1, keepdims=True)
                 + 2 * u * (np.abs(b64) + alpha * np.abs(s)))
        ok, worst = self.judge(cp.asnumpy(b).astype(np.float64), ref, bound)
        advanced = int(cp.asnumpy(step)[0]) == 6
        self.record("fastbp_bias_update", f"n={n} m={m}", dtype, ok and advanced, worst,
                    "" if advanced else "step counter not moved on once")

    def small_kernels(self, dtype: str) -> None:
        batches = (1, 129) if self.quick else BATCHES
        for m in batches:
            for n_in, n_out in ((784, 10), (30, 1)):
                self.guarded("fastbp_gather", f"m={m}", dtype,
                             lambda n_in=n_in, n_out=n_out, m=m: self.check_gather(
                                 dtype, n_in, n_out, m))
            for n_out in (10, 1) if self.quick else (10, 1, 1000):
                for kind in (0, 1):
                    self.guarded("fastbp_output_error", f"m={m}", dtype,
                                 lambda n_out=n_out, m=m, kind=kind: self.check_output_error(
                                     dtype, n_out, m, kind))
            for n in (1, 37) if self.quick else (1, 5, 37, 1024):
                self.guarded("fastbp_bias_update", f"m={m}", dtype,
                             lambda n=n, m=m: self.check_bias(dtype, n, m))

    # -- chapter 3: dropout masks and the momentum step -----------------------------------------
    def check_dropout(self, dtype: str, n: int, m: int, p: float, kind: str, captured: bool
                      ) -> None:
        """The mask against :func:`fastbp.core.dropout.mask` exactly (``ã = a ⊙ D`` is one
        rounding, so bit for bit), ``F = f'(z) ⊙ D`` within a few ulps; the captured kernel
        with its key from device memory (seed, first mini-batch, step counter)."""
        from fastbp.core import dropout

        cp, G, K, rng = self.cp, self.G, self.K, self.rng
        u = unit_roundoff(dtype)
        a_h = rng.random((n, m)).astype(dtype) * (2 if kind == "sigmoid" else 4) - \
            (0 if kind == "sigmoid" else 2)
        if kind == "sigmoid":
            a_h = a_h / 2
        a, f, d = cp.asarray(a_h), cp.full((n, m), np.nan, dtype), cp.full((n, m), np.nan, dtype)
        seed, first, at, layer = 0xC0FFEE11, 7, 3, 1
        key = dropout.step_key(seed, first + at, layer)
        if captured:
            keys = cp.asarray(np.array([seed, first], np.uint32))
            step = cp.asarray(np.array([at], np.int32))
            item = G.dropout_step_launch(a, f, d, kind, p, keys, step, layer)
        else:
            grid, head = G.dropout_args(a, f, d, kind)
            real = np.float32 if dtype == "float32" else np.float64
            item = G.Launch("fastbp_dropout_key", grid, (K.ELEMENT_THREADS,),
                            (*head, np.uint32(key), np.int32(K.PRIME_KIND[kind]),
                             np.uint32(dropout.threshold(p)), real(dropout.scale(p))))
        self.launch(dtype, item)
        D = dropout.mask(key, p, n, m, dtype)
        exact = np.array_equal(cp.asnumpy(d), a_h * D)
        a64 = a_h.astype(np.float64)
        prime = {"sigmoid": a64 * (1 - a64), "tanh": 1 - a64 * a64,
                 "relu": (a64 > 0).astype(np.float64)}[kind]
        ref = prime * D.astype(np.float64)
        bound = 4 * u * (np.abs(ref) + np.abs(D) * (1 + a64 * a64))
        ok, worst = self.judge(cp.asnumpy(f).astype(np.float64), ref, bound)
        name = "fastbp_dropout_step" if captured else "fastbp_dropout_key"
        self.record(name, f"n={n} m={m} p={p} {kind}", dtype, ok and exact, worst,
                    "" if exact else "the mask or ã differs from fastbp.core.dropout")

    def check_velocity(self, dtype: str, n: int, k: int, m: int) -> None:
        """The weight step after the GEMM, and the biases' whole step, against float64."""
        cp, G, rng = self.cp, self.G, self.rng
        u = unit_roundoff(dtype)
        mu, alpha, l2, l1 = 0.7, 0.05, 1e-3, 2e-3
        w_h = rng.standard_normal((n, k)).astype(dtype)
        w_h[0, 0] = 0  # sgn 0
        v_h = rng.standard_normal((n, k)).astype(dtype) * 0.1
        w, v = cp.asarray(w_h), cp.asarray(v_h)
        self.launch(dtype, G.velocity_launch(w, v, l2, l1))
        w64, v64 = w_h.astype(np.float64), v_h.astype(np.float64)
        v_ref = v64 - l2 * w64 - l1 * np.sign(w64)
        bound_v = 3 * u * (np.abs(v64) + l2 * np.abs(w64) + l1)
        ok_v, worst_v = self.judge(cp.asnumpy(v).astype(np.float64), v_ref, bound_v)
        ok_w, worst_w = self.judge(cp.asnumpy(w).astype(np.float64), w64 + v_ref,
                                   2 * u * np.abs(w64 + v_ref) + bound_v)
        self.record("fastbp_velocity_apply", f"({n}, {k})", dtype, ok_v and ok_w,
                    max(worst_v, worst_w))
        b_h = rng.standard_normal((n, 1)).astype(dtype)
        vb_h = rng.standard_normal((n, 1)).astype(dtype) * 0.1
        d_h = rng.standard_normal((n, m)).astype(dtype)
        b, vb, delta = cp.asarray(b_h), cp.asarray(vb_h), cp.asarray(d_h)
        step = cp.asarray(np.array([5], np.int32))
        self.launch(dtype, G.bias_velocity_launch(b, vb, delta, alpha, mu, step, True))
        s = d_h.astype(np.float64).sum(axis=1, keepdims=True)
        vb_ref = mu * vb_h.astype(np.float64) - alpha * s
        bound = (alpha * gamma(m, u) * np.abs(d_h.astype(np.float64)).sum(axis=1, keepdims=True)
                 + 3 * u * (np.abs(mu * vb_h.astype(np.float64)) + alpha * np.abs(s)))
        ok_vb, worst_vb = self.judge(cp.asnumpy(vb).astype(np.float64), vb_ref, bound)
        b_ref = b_h.astype(np.float64) + vb_ref
        ok_b, worst_b = self.judge(cp.asnumpy(b).astype(np.float64), b_ref,
                                   bound + 2 * u * np.abs(b_ref))
        advanced = int(cp.asnumpy(step)[0]) == 6
        self.record("fastbp_bias_velocity", f"n={n} m={m}", dtype, ok_vb and ok_b and advanced,
                    max(worst_vb, worst_b), "" if advanced else "step counter not moved on once")

    def techniques(self, dtype: str) -> None:
        shapes = [(7, 5), (30, 129)] if self.quick else [(1, 1), (7, 5), (30, 10), (30, 129),
                                                         (1024, 256)]
        for n, m in shapes:
            for kind in ("sigmoid", "tanh", "relu"):
                for captured in (True, False):
                    for p in ((0.5,) if self.quick else (0.0, 0.3, 0.5, 0.9)):
                        self.guarded("dropout", f"n={n} m={m} {kind}", dtype,
                                     lambda n=n, m=m, kind=kind, c=captured, p=p:
                                     self.check_dropout(dtype, n, m, p, kind, c))
            self.guarded("velocity", f"n={n} m={m}", dtype,
                         lambda n=n, m=m: self.check_velocity(dtype, n, 2 * n + 3, m))

    # -- whole steps, and their graph ------------------------------------------------------------
    def numpy_steps(self, W, b, xs, ys, order, m, steps, alpha, beta, kind, dtype):  # noqa: ANN001, ANN201
        """``steps`` SGD steps in NumPy in ``dtype`` (the reference); ``(params, cost)``."""
        W = [w.astype(dtype) for w in W]
        b = [x.astype(dtype) for x in b]
        xs, ys = xs.astype(dtype), ys.astype(dtype)
        tiny = np.finfo(dtype).tiny
        cost = 0.0
        for s in range(steps):
            idx = order[s * m:(s + 1) * m]
            x, y = xs[idx].T, ys[idx].T
            acts, a = [], x
            for w, bb in zip(W, b):
                a = (1 / (1 + np.exp(-(w @ a + bb)))).astype(dtype)
                acts.append(a)
            d = acts[-1] - y
            if kind == 0:
                cost += 0.5 * float(np.sum(d.astype(np.float64) ** 2))
                deltas = [d * acts[-1] * (1 - acts[-1])]
            else:
                cost -= float(np.sum(np.log(np.maximum(1 - np.abs(d), tiny)).astype(np.float64)))
                deltas = [d]
            for l in range(len(W) - 2, -1, -1):
                deltas.insert(0, (W[l + 1].T @ deltas[0]) * acts[l] * (1 - acts[l]))
            inputs = [x, *acts[:-1]]
            for l in range(len(W)):
                W[l] = (beta * W[l] - alpha * (deltas[l] @ inputs[l].T)).astype(dtype)
                b[l] = (b[l] - alpha * deltas[l].sum(axis=1, keepdims=True)).astype(dtype)
        return [*W, *b], cost

    def check_step(self, dtype: str, sizes: list[int], m: int, kind: int) -> None:
        cp, G = self.cp, self.G
        from fastbp.core.costs import CrossEntropyCost, QuadraticCost

        rng = np.random.default_rng(m * 1000 + len(sizes))
        steps = 3
        n = steps * m + 3
        W0 = [(rng.standard_normal((k2, k1)) / np.sqrt(k1)).astype(dtype)
              for k1, k2 in zip(sizes[:-1], sizes[1:])]
        b0 = [rng.standard_normal((k, 1)).astype(dtype) for k in sizes[1:]]
        xs_h = rng.random((n, sizes[0])).astype(dtype)
        ys_h = np.zeros((n, sizes[-1]), dtype=dtype)
        if sizes[-1] == 1:
            ys_h[:, 0] = rng.integers(0, 2, n)
        else:
            ys_h[np.arange(n), rng.integers(0, sizes[-1], n)] = 1
        order_h = rng.permutation(n).astype(np.int64)
        alpha, beta = 0.5 / m, 0.999
        W = [cp.asarray(w) for w in W0]
        b = [cp.asarray(x) for x in b0]
        xs, ys = cp.asarray(xs_h), cp.asarray(ys_h)
        cost_cls = QuadraticCost if kind == 0 else CrossEntropyCost
        prog = G.StepProgram(cp, W, b, xs, ys, cost_cls, m, alpha, beta, poison_buffers=True)
        prog.order[:n] = cp.asarray(order_h)
        fns = self.functions(dtype)
        for _ in range(steps):
            for item in prog.launches:
                fns[item.kernel](item.grid, item.block, item.args)
        cp.cuda.Device().synchronize()
        got = [cp.asnumpy(p).astype(np.float64) for p in (*W, *b)]
        got_cost = float(cp.asnumpy(prog.cost)[0])
        ref, ref_cost = self.numpy_steps(W0, b0, xs_h, ys_h, order_h, m, steps, alpha, beta,
                                         kind, np.float64)
        err = rel(got, ref)
        cost_err = abs(got_cost - ref_cost) / max(abs(ref_cost), 1e-300)
        if dtype == "float64":
            tol = cost_tol = 1e-12
        else:
            same, same_cost = self.numpy_steps(W0, b0, xs_h, ys_h, order_h, m, steps, alpha,
                                               beta, kind, np.float32)
            u = unit_roundoff(dtype)
            tol = max(10 * rel(same, ref), 100 * u)
            cost_tol = max(10 * abs(same_cost - ref_cost) / max(abs(ref_cost), 1e-300), 100 * u)
        case = f"{sizes} m={m} {'quadratic' if kind == 0 else 'cross-entropy'}"
        ok = all(np.isfinite(p).all() for p in got) and err <= tol and cost_err <= cost_tol
        self.record("step (launches)", case, dtype, ok, max(err / tol, cost_err / cost_tol),
                    f"params {err:.2g} cost {cost_err:.2g} (tol {tol:.2g})")
        # the same steps captured as graphs (2 steps and 1 step), replayed twice from the start
        replays = []
        captured = G.CapturedEpoch(cp, prog, steps_per_graph=2, device=0)
        for _ in range(2):
            for p, p0 in zip((*W, *b), (*W0, *b0)):
                p[...] = cp.asarray(p0)
            prog.cost.fill(0)
            captured.run(prog.order, steps)
            cp.cuda.Device().synchronize()
            replays.append(([cp.asnumpy(p) for p in (*W, *b)], float(cp.asnumpy(prog.cost)[0])))
        same_replays = (all(np.array_equal(x, y) for x, y in zip(replays[0][0], replays[1][0]))
                        and replays[0][1] == replays[1][1])
        like_launches = all(np.array_equal(x.astype(np.float64), y)
                            for x, y in zip(replays[0][0], got))
        self.record("step (graph replays)", case, dtype, same_replays and like_launches, 0.0,
                    "" if same_replays and like_launches else
                    ("replays differ" if not same_replays else "graph differs from launches"))

    def steps(self, dtype: str) -> None:
        nets = [[784, 30, 10], [784, 10], [30, 20, 1], [50, 40, 30, 20, 10]]
        batches = BATCHES
        if self.quick:
            nets, batches = [[30, 20, 1], [40, 10]], (1, 7)
        for sizes in nets:
            for m in batches:
                for kind in (0, 1):
                    self.guarded("step", f"{sizes} m={m}", dtype,
                                 lambda sizes=sizes, m=m, kind=kind: self.check_step(
                                     dtype, sizes, m, kind))


def rel(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    g = np.concatenate([np.ravel(x) for x in got])
    r = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in ref])
    return float(np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-300))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="write the checks as JSON here")
    p.add_argument("--quick", action="store_true", help="fewer shapes (the dry run)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    import cupy as cp

    checker = Checker(cp, args.quick)
    for dtype in ("float32", "float64"):
        for part in (checker.gemms, checker.small_kernels, checker.techniques, checker.steps):
            try:
                part(dtype)
            except Exception as exc:  # noqa: BLE001 - report and go on
                checker.record(part.__name__, "(setup)", dtype, False, float("inf"),
                               f"{type(exc).__name__}: {exc}")
    rows = checker.rows
    failed = [r for r in rows if not r["ok"]]
    summary = {"checks": len(rows), "failed": len(failed), "seconds": time.perf_counter() - t0,
               "cupy": getattr(cp, "__version__", "?"), "quick": args.quick}
    by_kernel: dict[str, dict[str, Any]] = {}
    for r in rows:
        k = by_kernel.setdefault(r["kernel"], {"checks": 0, "failed": 0, "worst": 0.0})
        k["checks"] += 1
        k["failed"] += 0 if r["ok"] else 1
        k["worst"] = max(k["worst"], r["worst"])
    summary["by_kernel"] = by_kernel
    for name, k in by_kernel.items():
        print(f"{name:22} {k['checks'] - k['failed']:5} of {k['checks']:5} pass, worst "
              f"|error| / (2 × bound) {k['worst']:.3g}")
    print(f"kernels: {len(rows) - len(failed)} of {len(rows)} checks pass "
          f"({summary['seconds']:.1f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "failed": failed[:200], "rows": rows}, f, indent=1,
                      default=str)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
