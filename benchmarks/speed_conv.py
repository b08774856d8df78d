"""Training throughput of the book's chapter-6 net, fastbp against PyTorch eager and JAX.

The net: ``ConvPool 20×5×5 /2 → ConvPool 40×5×5 /2 → FC 100 → softmax 10``, ReLU, mini-batch SGD
(η 0.03) over MNIST's training images in order, float32. A figure is training samples/s over
``--samples`` samples after a warm-up of the same length (which compiles what needs compiling);
the best of ``--rounds`` rounds, the contenders alternating within each round, each in its own
process with ``--threads`` threads. The same run measures the machine's sgemm rate (NumPy's BLAS,
1024³, same threads) and reports the fraction of it the net's ~9.2 MFLOP per sample reaches.

Methods: ``cpu`` and ``cpu-jit`` (fastbp's devices through ``fastbp.network3``; ``cpu-jit``
compiles the gathering, folding and pooling), ``torch-eager`` (benchmarks/peers/torch_conv.py),
``jax-scan`` (benchmarks/peers/jax_conv.py). Usage::

    python benchmarks/speed_conv.py --batches 10 100 --threads 1 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("cpu", "cpu-jit", "torch-eager", "jax-scan")
ETA = 0.03


def train_flops() -> int:
    """Multiply-adds ×2 of one training sample: every layer's forward product, its weight
    gradient (the same size) and the error below (all layers but the first)."""
    forward = [2 * 20 * 25 * 24 * 24, 2 * 40 * 500 * 8 * 8, 2 * 640 * 100, 2 * 100 * 10]
    return 2 * sum(forward) + sum(forward[1:])


def load(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST training images ``(n, 784)`` and labels (random pixels without
    MNIST: the speed does not depend on the values)."""
    try:
        from fastbp.datasets import load_mnist

        train = load_mnist(os.environ.get("FASTBP_DATA"), download=False).train
        return np.ascontiguousarray(train.images[:n]), train.labels[:n]
    except Exception:  # noqa: BLE001 - any failure: random data of the same shape
        rng = np.random.default_rng(0)
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)


def setup_fastbp(device: str) -> Callable[..., Callable[[int], None]]:
    def setup(m: int, X: np.ndarray, labels: np.ndarray, eta: float, threads: int
              ) -> Callable[[int], None]:
        from fastbp.network3 import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer

        np.random.seed(0)
        net = Network([
            ConvPoolLayer(image_shape=(m, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            ConvPoolLayer(image_shape=(m, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU),
            SoftmaxLayer(n_in=100, n_out=10)], m, device=device)
        data = net.on_device((X, labels))

        def run(batches: int) -> None:
            for i in range(batches):
                x, y = data.batch(i % data.batches)
                net.train_mini_batch(x, y, eta, 1.0, i)
        return run
    return setup


def setup_of(method: str) -> Callable[..., Callable[[int], None]]:
    sys.path.insert(0, str(HERE / "peers"))
    if method == "torch-eager":
        import torch_conv

        return torch_conv.setup
    if method == "jax-scan":
        import jax_conv

        return jax_conv.setup
    return setup_fastbp(method)


def worker(method: str, m: int, samples: int, threads: int) -> dict[str, Any]:
    """One measurement in this process: a warm-up run, then the timed one."""
    if method == "sgemm":
        a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
        out = np.empty_like(a)
        np.matmul(a, a, out=out)
        best = min(_timed(lambda: np.matmul(a, a, out=out)) for _ in range(10))
        return {"gflops": 2 * 1024**3 / best / 1e9}
    batches = max(samples // m, 5)
    X, labels = load(max(batches * m, 1000))
    run = setup_of(method)(m, X, labels, ETA, threads)
    run(batches)
    seconds = _timed(lambda: run(batches))
    return {"samples_per_s": batches * m / seconds}


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def env_for(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env.pop("OPENBLAS_CORETYPE", None)  # DESIGN.md: a forced old kernel is not this machine's
    env.pop("OPENBLAS_L2_SIZE", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def measure(method: str, m: int, samples: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--batches", str(m), "--samples",
           str(samples), "--threads", str(threads)]
    done = subprocess.run(cmd, env=env_for(threads), capture_output=True, text=True,
                          timeout=1800)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    info["cpu"], info["cores"] = model, os.cpu_count()
    info["load_average"] = os.getloadavg()
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture")}
                        for p in threadpool_info()]
    except ImportError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batches[0], args.samples, args.threads)))
        return
    results: dict[str, Any] = {"machine": machine(), "threads": args.threads,
                               "samples": args.samples, "flops_per_sample": train_flops(),
                               "sgemm_gflops": [], "runs": {}}
    for _ in range(args.rounds):
        results["sgemm_gflops"].append(measure("sgemm", 0, 0, args.threads).get("gflops"))
        for m in args.batches:
            for method in args.methods:
                got = measure(method, m, args.samples, args.threads)
                results["runs"].setdefault(f"{method} m={m}", []).append(got)
                print(f"{method:12s} m={m:<4d} {got}", flush=True)
    sgemm = max(g for g in results["sgemm_gflops"] if g)
    print(f"sgemm {sgemm:.1f} GFLOP/s; {results['machine']}")
    for key, runs in results["runs"].items():
        rates = [r["samples_per_s"] for r in runs if "samples_per_s" in r]
        if rates:
            best = max(rates)
            frac = best * train_flops() / (sgemm * 1e9)
            print(f"{key:20s} {best:8.0f} samples/s  {frac:6.1%} of sgemm")
    results["machine"]["load_average_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
