"""GPU training throughput: fastbp's captured graph and eager step, fastbp on the CPU, and the
peers (PyTorch eager, JAX ``lax.scan``) on the same GPU.

Every figure is training samples/s for one shuffled epoch of mini-batch SGD (sigmoid layers,
quadratic cost, ``eta`` 3.0, float32) on MNIST's 50,000 training images (``--data``) or random
data of that shape. fastbp is timed the way ``Network.train`` runs an epoch, without its
per-call work: one epoch plan (the data set uploaded once, graphs captured once, in a warm-up
epoch), then per timed epoch the new order's upload, ``sgd_epoch`` on that plan and a device
synchronize, all inside the timed region. A peer's epoch ends with its own synchronize
(``torch.cuda.synchronize``, ``block_until_ready``). The contenders of a case alternate, round by
round; each figure is the best of ``--repeat`` rounds, after one warm-up epoch each.

The ``graph+md`` and ``eager+md`` contenders time the same paths training with chapter 3's
momentum (μ = 0.9) and dropout (p = 0.5, hidden layers): the velocity step and the masks drawn on
the device (inside the graph for ``graph+md``).

For the networks too large for graphs, ``bounds`` gives the rate cuBLAS alone would allow: the
step's GEMMs (forward, BP2, the weight update) at the same shapes, issued back to back behind a
kernel that holds the stream and timed on the GPU between two CUDA events with one synchronize,
so the host's cost per call is not in it (``host_issue_s`` says what that cost is).

Usage, on a machine with a GPU and ``fastbp-cupy``::

    python benchmarks/speed_cuda.py --data ~/mnist --out speed-cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ETA = 3.0
SEED = 1

# The target cases lead (the graph path's 1M samples/s at m = 10, the big network against its
# cuBLAS bound), so a run cut short by its budget has measured them.
TARGET_CASES = [([784, 30, 10], 10), ([784, 1024, 1024, 10], 256)]
CASES = {
    "full": [*TARGET_CASES, ([784, 30, 10], 100), ([784, 30, 10], 1000),
             ([784, 100, 10], 10), ([784, 100, 10], 100), ([784, 100, 10], 1000),
             ([784, 1024, 1024, 10], 1024)],
    "quick": [*TARGET_CASES, ([784, 100, 10], 100)],
    "targets": TARGET_CASES,
}
CONTENDERS = ("graph", "eager", "cpu", "torch-eager", "jax-scan", "graph+md", "eager+md")
TECHNIQUES = {"momentum": 0.9, "dropout": 0.5}  # the "+md" contenders: momentum and dropout


def fastbp_internals() -> dict[str, Any]:
    """The fastbp internals this script uses, imported in one place."""
    from fastbp.core.epoch import run_epoch

    return {"run_epoch": run_epoch}


class Skip(Exception):
    """This contender does not run for this case (the reason is the message)."""


class FastbpContender:
    """fastbp on ``cuda`` with graphs (``graph``) or without (``eager``), or on ``cpu``; a
    ``+md`` suffix trains with momentum and dropout (:data:`TECHNIQUES`)."""

    def __init__(self, name: str, sizes: list[int], m: int, X: np.ndarray,
                 labels: np.ndarray) -> None:
        self.name, self.sizes, self.m, self.X, self.labels = name, sizes, m, X, labels
        self.n = int(X.shape[1])
        self.path: str | None = None
        self.info: dict[str, Any] = {}

    def prepare(self) -> None:
        import fastbp

        path, _, extra = self.name.partition("+")
        techniques = TECHNIQUES if extra == "md" else {}
        if techniques and len(self.sizes) < 3:
            raise Skip("dropout needs a hidden layer")
        if path == "cpu":
            backend: Any = fastbp.devices.resolve("cpu", "float32")
        else:
            from fastbp_cupy import CuPyBackend

            backend = CuPyBackend("float32", graphs=path == "graph")
            weights = sum(k * n for k, n in zip(self.sizes[:-1], self.sizes[1:]))
            if path == "graph" and not (self.m <= backend.graph_max_batch
                                             and weights <= backend.graph_max_weights):
                raise Skip(f"graphs run batches ≤ {backend.graph_max_batch} of networks with ≤ "
                           f"{backend.graph_max_weights:,} weights; this case runs eager")
        self.backend = backend
        self.net = fastbp.Network(self.sizes, seed=SEED, device=backend)
        self.plan = self.net.epoch_plan(self.X, self.labels, batch_size=self.m, eta=ETA,
                                        **techniques)
        self.rng = np.random.default_rng(0)
        self._run_epoch = fastbp_internals()["run_epoch"]

    def run(self) -> float:
        """Seconds for one epoch (the order's upload, the epoch, a synchronize)."""
        be, plan = self.backend, self.plan
        order = self.rng.permutation(self.n)
        with be.activate():
            be.synchronize()
            t0 = time.perf_counter()
            # a new mask seed, as train() draws
            plan.start(be.index_array(order), int(self.rng.integers(1 << 32)))
            total = self._run_epoch(be, plan)
            be.synchronize()
            cost = float(total)
            seconds = time.perf_counter() - t0
        self.path = getattr(be, "last_epoch_path", None) or "numpy"
        self.info = {"path": self.path, "cost": cost / self.n,
                     "graph_error": getattr(be, "graph_error", None)}
        return seconds

    def close(self) -> None:
        self.__dict__.pop("plan", None)
        self.__dict__.pop("net", None)


class PeerContender:
    """A peer of ``benchmarks/peers`` on the GPU, from the same initial parameters."""

    def __init__(self, name: str, sizes: list[int], m: int, X: np.ndarray, Y: np.ndarray,
                 weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
        self.name, self.sizes, self.m, self.X, self.Y = name, sizes, m, X, Y
        self.weights, self.biases = weights, biases
        self.path: str | None = name
        self.info: dict[str, Any] = {}

    def prepare(self) -> None:
        from fastbp.bench.peers import PeerUnavailable, load_peers

        specs = load_peers(ROOT / "benchmarks" / "peers")
        if self.name not in specs:
            raise Skip(f"no peer {self.name!r} in benchmarks/peers")
        try:
            model = specs[self.name].build(self.sizes, self.weights, self.biases, "cuda",
                                           "float32")
            self._epoch: Callable[[], None] = model.epoch(self.X, self.Y, self.m, ETA)
        except PeerUnavailable as exc:
            raise Skip(f"unavailable: {exc}") from exc
        self.info = dict(model.describe())

    def run(self) -> float:
        t0 = time.perf_counter()
        self._epoch()  # ends with the peer's own synchronize
        return time.perf_counter() - t0

    def close(self) -> None:
        self.__dict__.pop("_epoch", None)


def load_data(data: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X, labels, what)``: MNIST's training images from ``data`` if given and readable, else
    random data of MNIST's shape; ``n`` samples."""
    if data:
        try:
            from fastbp.datasets import load_mnist

            mnist = load_mnist(data, download=False)
            X, labels = mnist.train.X, mnist.train.labels
            take = min(n, int(X.shape[1]))
            return (np.ascontiguousarray(X[:, :take], dtype=np.float32),
                    np.asarray(labels[:take]), f"MNIST training images from {data}")
        except Exception as exc:  # noqa: BLE001 - report and go on with random data
            print(f"speed_cuda: MNIST not read from {data} ({exc}); random data instead",
                  file=sys.stderr)
    rng = np.random.default_rng(0)
    return (rng.random((784, n), dtype=np.float32), rng.integers(0, 10, n),
            "random data of MNIST's shape")


def step_gemms(cp: Any, sizes: list[int], m: int) -> tuple[list[Callable[[], Any]], int]:
    """The GEMMs of one training step at batch ``m`` on cuBLAS, as the eager path calls them
    (forward, BP2, the weight update folded into BP4), on buffers of their own; and their
    flop count."""
    gemm = cp.cublas.gemm
    f32 = np.float32
    calls: list[Callable[[], Any]] = []
    flops = 0
    for l, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, a_prev = cp.ones((n, k), f32), cp.ones((k, m), f32)
        a, d, d_prev = cp.ones((n, m), f32), cp.ones((n, m), f32), cp.ones((k, m), f32)
        calls.append(lambda W=W, a_prev=a_prev, a=a: gemm("N", "N", W, a_prev, out=a))
        calls.append(lambda W=W, a_prev=a_prev, d=d: gemm("N", "T", d, a_prev, out=W,
                                                          alpha=-1e-9, beta=1.0))  # BP4 + SGD
        flops += 4 * n * k * m
        if l > 0:  # BP2
            calls.append(lambda W=W, d=d, d_prev=d_prev: gemm("T", "N", W, d, out=d_prev))
            flops += 2 * n * k * m
    return calls, flops


QUEUED_LAUNCHES = 256  # GEMMs queued behind the spin at most (CUDA's launch queue holds ~1000)


def gpu_seconds(cp: Any, work: Callable[[], None], reps: int) -> tuple[float, float, bool]:
    """``(GPU seconds, host seconds, queued)`` per call of ``work``: ``reps`` calls issued
    while ``fastbp_spin`` holds the stream (for twice the host's issue time), between two CUDA
    events, one synchronize at the end. ``queued`` is whether the spin outlasted the issuing,
    so the calls ran back to back on the GPU (else the figure includes host gaps, a
    pessimistic bound)."""
    from fastbp_cupy.kernels import spin_kernel

    work()
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        work()
    host = (time.perf_counter() - t0) / reps
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    spin_kernel(cp)((1,), (1,), (np.int64(2 * host * reps * 1e9 + 200_000),))
    start.record()
    for _ in range(reps):
        work()
    end.record()
    queued = not start.done  # the spin still held the stream after the last call was issued
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / 1e3 / reps, host, queued


def cublas_bound(sizes: list[int], m: int, reps: int = 10, peak_size: int = 8192
                 ) -> dict[str, Any]:
    """The rate cuBLAS alone allows at batch ``m``: the step's GEMMs (:func:`step_gemms`) back
    to back on the GPU, timed with CUDA events (:func:`gpu_seconds`), not call by call with a
    synchronize each (which adds the host's launch cost to every GEMM); their GFLOP/s, the
    host's seconds to issue them, and one ``peak_size``² SGEMM's GFLOP/s on the same GPU."""
    import cupy as cp

    calls, flops = step_gemms(cp, sizes, m)

    def step() -> None:
        for call in calls:
            call()

    reps = max(1, min(reps, QUEUED_LAUNCHES // len(calls)))
    seconds, host, queued = gpu_seconds(cp, step, reps)
    A = cp.ones((peak_size, peak_size), np.float32)
    C = cp.empty((peak_size, peak_size), np.float32)
    peak, _, _ = gpu_seconds(cp, lambda: cp.cublas.gemm("N", "N", A, A, out=C), 3)
    return {"sizes": sizes, "batch_size": m, "gemms_per_step": len(calls),
            "cublas_step_s": seconds, "host_issue_s": host, "queued": queued,
            "cublas_bound_samples_per_s": round(m / max(seconds, 1e-12)),
            "gemm_gflops": flops / max(seconds, 1e-12) / 1e9,
            "sgemm_peak_gflops": 2 * peak_size**3 / max(peak, 1e-12) / 1e9}


def time_case(sizes: list[int], m: int, X: np.ndarray, labels: np.ndarray,
              contenders: list[str], repeat: int, deadline: float) -> list[dict[str, Any]]:
    """Every contender of one case, alternating round by round; one row each."""
    import fastbp

    n = int(X.shape[1])
    Y = np.zeros((sizes[-1], n), dtype=np.float32)
    Y[labels, np.arange(n)] = 1.0
    init = fastbp.Network(sizes, seed=SEED, device="cpu")
    weights = [np.asarray(w, dtype=np.float32) for w in init.weights]
    biases = [np.asarray(b, dtype=np.float32) for b in init.biases]
    rows, ready = [], []
    for name in contenders:
        row: dict[str, Any] = {"sizes": sizes, "batch_size": m, "contender": name}
        rows.append(row)
        if m > n:
            row["skipped"] = f"batch {m} > {n} samples"
            continue
        fastbp_path = name.partition("+")[0] in ("graph", "eager", "cpu")
        c: Any = (FastbpContender(name, sizes, m, X, labels) if fastbp_path
                  else PeerContender(name, sizes, m, X, Y, weights, biases))
        try:
            c.prepare()
            row["warmup_s"] = round(c.run(), 4)  # compile, capture, JIT
            row.update(c.info)
            ready.append((c, row))
        except Skip as exc:
            row["skipped"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one contender failing never stops the rest
            row["error"] = f"{type(exc).__name__}: {exc}"
    times: dict[int, list[float]] = {id(c): [] for c, _ in ready}
    slow = any(row.get("warmup_s", 0) > 10 for _, row in ready)
    for _ in range(1 if slow else repeat):
        for c, row in ready:
            if time.monotonic() > deadline and times[id(c)]:
                continue
            try:
                times[id(c)].append(c.run())
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {exc}"
    for c, row in ready:
        t = times[id(c)]
        if t:
            row.update(samples_per_s=round(n / min(t)),
                       median_samples_per_s=round(n / statistics.median(t)), epochs_timed=len(t),
                       path=c.path)
        c.close()
    return rows


def release_memory() -> None:
    """Give back what the pools of CuPy and PyTorch hold, between cases."""
    import gc

    gc.collect()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except Exception:  # noqa: BLE001
        pass
    if "torch" in sys.modules:
        try:
            sys.modules["torch"].cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def parse_cases(text: str) -> list[tuple[list[int], int]]:
    """``full``, ``quick``, or ``784,30,10:10;784,100,10:100``."""
    if text in CASES:
        return CASES[text]
    cases = []
    for part in text.split(";"):
        sizes, m = part.split(":")
        cases.append(([int(s) for s in sizes.split(",")], int(m)))
    return cases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="samples per epoch")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds per case")
    p.add_argument("--cases", default="full", help="full, quick, or 784,30,10:10;...")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--data", default=os.environ.get("FASTBP_DATA"), help="an MNIST folder")
    p.add_argument("--budget", type=float, default=240.0, help="seconds for the whole run")
    p.add_argument("--bound-reps", type=int, default=10, help="timings per GEMM of a bound")
    p.add_argument("--peak-size", type=int, default=8192, help="side of the peak SGEMM")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU
    deadline = time.monotonic() + args.budget
    import fastbp

    try:
        device = fastbp.devices.resolve("cuda").describe()
    except fastbp.DeviceError as exc:
        print(f"speed_cuda: {exc}", file=sys.stderr)
        return 2
    X, labels, what = load_data(args.data, args.n)
    contenders = [c for c in args.contenders.split(",") if c]
    result: dict[str, Any] = {
        "device": device, "cpu": fastbp.devices.resolve("cpu").describe(), "data": what,
        "n": int(X.shape[1]), "repeat": args.repeat, "eta": ETA, "dtype": "float32",
        "rows": [], "bounds": [],
    }

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2, default=str))

    for sizes, m in parse_cases(args.cases):
        if time.monotonic() > deadline:
            result["rows"].append({"sizes": sizes, "batch_size": m, "contender": "*",
                                   "skipped": "time budget spent"})
            continue
        rows = time_case(sizes, m, X, labels, contenders, args.repeat, deadline)
        for row in rows:
            rate = row.get("samples_per_s")
            note = row.get("skipped") or row.get("error") or ""
            shown = f"{rate:>12,} samples/s" if rate else f"{'-':>22}"
            print(f"{str(sizes):24} m={m:<5} {row['contender']:12} {str(row.get('path', '')):8}"
                  f" {shown}  {note}", flush=True)
        result["rows"].extend(rows)
        if sum(k * n for k, n in zip(sizes[:-1], sizes[1:])) > 262_144:
            try:
                result["bounds"].append(cublas_bound(sizes, m, args.bound_reps,
                                                     args.peak_size))
            except Exception as exc:  # noqa: BLE001
                result["bounds"].append({"sizes": sizes, "batch_size": m,
                                         "error": f"{type(exc).__name__}: {exc}"})
        release_memory()
        save()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
