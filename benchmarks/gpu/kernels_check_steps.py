"""The second half of ``kernels_check.py``: chapter 3's kernels (the dropout masks against
:func:`fastbp.core.dropout.mask`, the momentum step) and whole training steps (launch by launch
against NumPy, and captured as CUDA graphs, replayed twice), as a mixin of its ``Checker``; and
the rounding helpers both halves use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCHES = (1, 7, 64, 128, 129)


def unit_roundoff(dtype: str) -> float:
    return float(np.finfo(dtype).eps) / 2


def gamma(k: int, u: float) -> float:
    return k * u / (1 - k * u)


def rel(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    g = np.concatenate([np.ravel(x) for x in got])
    r = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in ref])
    return float(np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-300))


class StepChecks:
    """Checks of ``Checker`` that need its bookkeeping (``record``, ``guarded``, ``launch``,
    ``judge``, ``functions``) and its ``cp``, ``G``, ``K``, ``rng`` and ``quick``."""

    cp: Any
    G: Any
    K: Any
    rng: np.random.Generator
    quick: bool
    record: Any
    guarded: Any
    launch: Any
    judge: Any
    functions: Any

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
