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
from kernels_check_steps import BATCHES, StepChecks, gamma, unit_roundoff

# Every epilogue of the GEMM kernels (fastbp_cupy.kernels.GEMM_*), and the SGD update with β = 0,
# which must not read C (it starts NaN here).
COSTS = {0: "quadratic", 1: "cross-entropy", 2: "log-likelihood"}  # output-error kinds
EPILOGUES = {"forward": 0, "bp2": 1, "sgd": 2, "sgd-beta0": 2, "forward-tanh": 3,
             "forward-relu": 4, "forward-linear": 5, "bp2-tanh": 6, "bp2-relu": 7,
             "bp2-factor": 8}


def epilogue_operand(epilogue: str, rng: np.random.Generator, M: int, N: int) -> np.ndarray:
    """The epilogue's ``v``: a bias column (forward), an activation (BP2: σ in (0, 1), tanh in
    (−1, 1), relu ≥ 0 with exact zeros), a factor ``F`` of any sign, or the ``C`` an update
    reads."""
    if epilogue.startswith("forward"):
        return rng.standard_normal((M, 1))
    if epilogue == "bp2":
        return rng.random((M, N))
    if epilogue == "bp2-tanh":
        return rng.uniform(-1, 1, (M, N))
    if epilogue == "bp2-relu":
        return np.maximum(rng.standard_normal((M, N)), 0)
    return rng.standard_normal((M, N))


def epilogue_reference(epilogue: str, acc: np.ndarray, size: np.ndarray, v: np.ndarray,
                       alpha: float, beta: float, g: float, u: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The exact result of ``epilogue`` on the float64 product ``acc`` (``size`` = |A||B|, so
    the computed product is within ``g size``) and its bound: the product's error through the
    epilogue's slope, plus a few roundings of its own."""
    z, zbound = acc + v, g * (size + np.abs(v))
    if epilogue == "forward":
        ref = 1 / (1 + np.exp(-z))
        return ref, 0.25 * zbound + 8 * u * ref
    if epilogue == "forward-tanh":
        ref = np.tanh(z)
        return ref, zbound + 8 * u * np.abs(ref)
    if epilogue == "forward-relu":
        ref = np.maximum(z, 0)
        return ref, zbound + 2 * u * ref
    if epilogue == "forward-linear":
        return z, zbound + 2 * u * np.abs(z)
    if epilogue.startswith("bp2"):
        s = {"bp2": v * (1 - v), "bp2-tanh": 1 - v * v, "bp2-relu": (v > 0).astype(float),
             "bp2-factor": v}[epilogue]
        ref = acc * s
        # 1 − a² loses its relative accuracy as |a| → 1: an absolute u (1 + a²) in s
        cancel = np.abs(acc) * 2 * u * (1 + v * v) if epilogue == "bp2-tanh" else 0
        return ref, g * size * np.abs(s) + 4 * u * np.abs(ref) + cancel
    if epilogue == "sgd-beta0":
        ref = -alpha * acc
        return ref, alpha * g * size + 2 * u * np.abs(ref)
    ref = beta * v - alpha * acc
    return ref, alpha * g * size + 3 * u * (beta * np.abs(v) + alpha * np.abs(acc))


class Checker(StepChecks):
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

    def check_gemm(self, dtype: str, M: int, N: int, Kd: int, a_t: bool, b_t: bool,
                   epilogue: str, kernel: str | None) -> None:
        cp, G, rng = self.cp, self.G, self.rng
        u = unit_roundoff(dtype)
        mode = EPILOGUES[epilogue]
        A_h = rng.standard_normal((M, Kd)).astype(dtype)
        B_h = rng.standard_normal((Kd, N)).astype(dtype)
        alpha, beta = 0.25, 0.0 if epilogue == "sgd-beta0" else 0.9
        A, B = self.device(A_h, a_t), self.device(B_h, b_t)
        buf = cp.full((M + 2, N + 2), np.nan, dtype=dtype)
        C = buf[1:M + 1, 1:N + 1]
        v_h = epilogue_operand(epilogue, rng, M, N).astype(dtype)
        if mode == self.K.GEMM_SGD:  # v is the C it updates; with β = 0, C stays NaN
            if epilogue == "sgd":
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
        ref, bound = epilogue_reference(epilogue, A64 @ B64, np.abs(A64) @ np.abs(B64), v64,
                                        alpha, beta, gamma(Kd + 1, u), u)
        ok, worst = self.judge(inner, ref, bound)
        oob = not np.isnan(got[band]).all()
        case = (f"M={M} N={N} K={Kd} A={'T' if a_t else 'C'} B={'T' if b_t else 'C'} "
                f"{epilogue}")
        self.record(item.kernel, case, dtype, ok and not oob, worst,
                    "wrote outside C" if oob else "")

    def gemms(self, dtype: str) -> None:
        for M, N, Kd in self.gemm_shapes():
            for a_t in (False, True):
                for b_t in (False, True):
                    # the loads depend on the layout, an epilogue does not: the step's own
                    # three on every layout, the rest where both kernels run (in a full run)
                    every = self.quick or (not a_t and b_t)
                    for mode in (EPILOGUES if every else ("forward", "bp2", "sgd")):
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
        elif kind == K.COST_LOG_LIKELIHOOD:  # −Σ y ln a over the outputs y marks
            ref = d
            bound = 2 * u * np.abs(d)
            y64 = y_h.T.astype(np.float64)
            cost = -np.sum(y64 * np.log(a64))
            cost_bound = np.sum(y64 * 2 * u * (1 + np.abs(np.log(a64))))
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
        case = f"n_out={n_out} m={m} {COSTS[kind]} blocks={item.grid[0]}"
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
                for kind in COSTS:
                    self.guarded("fastbp_output_error", f"m={m}", dtype,
                                 lambda n_out=n_out, m=m, kind=kind: self.check_output_error(
                                     dtype, n_out, m, kind))
            for n in (1, 37) if self.quick else (1, 5, 37, 1024):
                self.guarded("fastbp_bias_update", f"m={m}", dtype,
                             lambda n=n, m=m: self.check_bias(dtype, n, m))
        for m in (1, 129) if self.quick else (*BATCHES, 300):
            for n in (1, 10) if self.quick else (1, 2, 10, 37):
                self.guarded("fastbp_softmax_columns", f"n={n} m={m}", dtype,
                             lambda n=n, m=m: self.check_softmax(dtype, n, m))

    def check_softmax(self, dtype: str, n: int, m: int) -> None:
        """Each column's softmax against float64, a column with entries near the largest
        exponent (shifted by its top, nothing overflows) among them. An entry ``p_i`` is within
        ``u p_i (|z_i − top| + Σ_k p_k |z_k − top| + n + 8)`` (the exponent's argument rounds
        relative to its size, each exp, sum and quotient a few ``u``)."""
        cp, G, rng = self.cp, self.G, self.rng
        u = unit_roundoff(dtype)
        z_h = (rng.standard_normal((n, m)) * 4).astype(dtype)
        z_h[:, 0] += np.asarray(np.log(np.finfo(dtype).max) - 1, dtype)  # e^z alone overflows
        z = cp.asarray(z_h)
        self.launch(dtype, G.softmax_launch(z))
        z64 = z_h.astype(np.float64)
        gap = np.abs(z64 - z64.max(axis=0, keepdims=True))
        e = np.exp(-gap)
        ref = e / e.sum(axis=0, keepdims=True)
        bound = u * ref * (gap + (ref * gap).sum(axis=0, keepdims=True) + n + 8)
        ok, worst = self.judge(cp.asnumpy(z).astype(np.float64), ref, bound)
        self.record("fastbp_softmax_columns", f"n={n} m={m}", dtype, ok, worst)


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
