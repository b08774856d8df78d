"""CPU training throughput of fastbp and its peers, one epoch of MNIST-shaped data, side by side.

Every figure is training samples/s for one epoch of mini-batch SGD (sigmoid layers, quadratic
cost, ``eta`` 3.0, shuffled order, float32), the best of ``--repeat`` epochs after a warm-up epoch
(which compiles what needs compiling). Each method runs in its own process, so the thread pools of
one library do not disturb another. Methods:

- ``loop``: the per-sample loop, :func:`fastbp.core.reference.sgd_epoch` (the book's ``network.py``)
- ``numpy``: fastbp's ``cpu`` device (its ``sgd_epoch``, as ``Network.train`` runs it)
- ``numpy-before``: the same, from the fastbp sources in ``--before`` (an older checkout)
- ``cpu-jit``: fastbp's ``cpu-jit`` device (the Numba plugin, whole epoch compiled)
- ``cpu-jit-before``: the same, from ``--before`` (which then also holds ``fastbp_numba``)
- ``torch-eager`` / ``torch-compile``: ``nn.Sequential`` of ``Linear`` + ``Sigmoid`` and
  ``optim.SGD``, as written eagerly and under ``torch.compile`` (forward and backward), with
  ``torch.set_flush_denormal(True)``
- ``jax-step`` / ``jax-scan``: one ``jax.jit`` step per mini-batch from Python, and the whole epoch
  as one ``lax.scan`` (the mini-batch gathered inside, as fastbp does)

Slow methods run a subset of the epoch (about ``--seconds`` of work, at least 20 steps); the
figure is still samples/s. Usage::

    python benchmarks/speed_cpu.py --out benchmarks/results/speed-cpu/after.json
    python benchmarks/speed_cpu.py --report benchmarks/results/speed-cpu/after.json

``--rounds N`` runs the whole table N times, the methods alternating, and prints each round's
ratio beside the ratio of the bests (for a machine whose speed drifts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

ETA = 3.0
METHODS = ("loop", "numpy-before", "numpy", "cpu-jit-before", "cpu-jit", "torch-eager",
           "torch-compile", "jax-step", "jax-scan")
BEFORE = ("numpy-before", "cpu-jit-before")  # run from the sources in --before
SMALL = ([784, 30, 10], [784, 100, 10])
SMALL_BATCHES = (1, 10, 100, 1000)
BIG = [784, 1024, 1024, 10]
BIG_BATCHES = (256, 1024)
BIG_N = 10240


# -- what is measured ----------------------------------------------------------------------------
def gemm_flops(sizes: list[int]) -> int:
    """GEMM flops of one training sample: feedforward ``2 Σ n_l n_{l-1}``, BP4 the same, BP2
    ``2 Σ_{l ≥ 3} n_l n_{l-1}`` (no δ is needed for the input layer)."""
    pairs = [k * n for k, n in zip(sizes[:-1], sizes[1:])]
    return 4 * sum(pairs) + 2 * sum(pairs[1:])


def load_data(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` MNIST training samples ``(n, 784)`` and one-hot targets ``(n, 10)``, float32.

    Real MNIST from ``$FASTBP_DATA`` when it is there, else uniform random pixels (speed does not
    depend on the values)."""
    try:
        from fastbp.datasets import load_mnist

        train = load_mnist(os.environ.get("FASTBP_DATA"), download=False).train
        X = np.ascontiguousarray(train.images[:n], dtype=np.float32)
        labels = train.labels[:n]
        if len(labels) < n:
            raise ValueError("fewer samples than asked for")
        source = "MNIST training set"
    except Exception as exc:  # noqa: BLE001 - any failure falls back to random data
        rng = np.random.default_rng(0)
        X = rng.random((n, 784), dtype=np.float32)
        labels = rng.integers(0, 10, n)
        source = f"random (MNIST not loaded: {type(exc).__name__})"
    Y = np.zeros((n, 10), dtype=np.float32)
    Y[np.arange(n), labels] = 1.0
    return X, Y, source


def init_params(sizes: list[int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``W^l`` ``(n_l, n_{l-1})`` scaled by ``1/sqrt(n_{l-1})`` and ``b^l`` ``(n_l, 1)``."""
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
          for k, n in zip(sizes[:-1], sizes[1:])]
    bs = [rng.standard_normal((n, 1)).astype(np.float32) for n in sizes[1:]]
    return ws, bs


# -- one epoch of each method: setup(sizes, m, X, Y) -> run(order) ------------------------------
Setup = Callable[[list, int, np.ndarray, np.ndarray], Callable[[np.ndarray], None]]


def setup_loop(sizes, m, X, Y):
    from fastbp.core import reference

    ws, bs = init_params(sizes)
    XT, YT = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)

    def run(order):
        reference.sgd_epoch(ws, bs, XT, YT, batch_size=m, eta=ETA, order=order)
    return run


def setup_fastbp(device: str) -> Setup:
    def setup(sizes, m, X, Y):
        import fastbp

        try:  # the layered package
            from fastbp.core.epoch import run_epoch
            from fastbp.core.plan import EpochPlan
        except ImportError:  # an older checkout in --before: a flat package
            from fastbp.training import EpochPlan

            def run_epoch(be, plan):
                return be.sgd_epoch(plan)

        net = fastbp.Network(sizes, device=device, dtype="float32", seed=0, init="scaled")
        be = net.backend
        try:  # the plan as typed pieces
            from fastbp.core.plan import Layers, Parameters, StepSettings, TrainingData
        except ImportError:  # an older checkout: one bag
            plan = EpochPlan(sizes, net._weights, net._biases, net.cost, be.asarray(X),
                             be.asarray(Y), order=None, batch_size=m, eta=ETA, workspaces={})

            def start(order):
                plan.order = be.index_array(order)
        else:
            plan = EpochPlan(Layers(sizes, net.cost), StepSettings(m, ETA, int(X.shape[0])),
                             Parameters(net._weights, net._biases),
                             TrainingData(be.asarray(X), be.asarray(Y)))

            def start(order):  # epoch by epoch: a planner's trials fall on the first ones
                try:
                    plan.start(be.index_array(order), epoch=epochs[0])
                except TypeError:  # an older checkout in --before: no epoch numbers
                    plan.start(be.index_array(order))
                epochs[0] += 1

        epochs = [0]

        def run(order):
            start(order)
            run_epoch(be, plan)

        def settle(order):
            """Epochs until the device's plan is settled (its trials, real steps of the
            first epochs, are over): the timed epochs run the plan alone."""
            plan_for = getattr(be, "plan_for", None)
            for _ in range(10):
                if plan_for is None or plan_for(plan).source != "measuring":
                    return
                run(order)

        run.settle = settle
        return run
    return setup


def _torch_model(sizes, m):
    import torch

    torch.manual_seed(0)
    # subnormals flushed, as XLA and fastbp's cpu-jit do: a saturated sigmoid layer otherwise
    # makes torch's steps 10-100x slower on x86, which would not be a fair peer
    torch.set_flush_denormal(True)
    layers: list[Any] = []
    for k, n in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(k, n), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=ETA)
    return torch, model, opt


def setup_torch(compiled: bool) -> Setup:
    def setup(sizes, m, X, Y):
        torch, model, opt = _torch_model(sizes, m)
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

        def loss_fn(x, y):
            return 0.5 * ((model(x) - y) ** 2).sum() / x.shape[0]

        if compiled:  # forward and backward compiled (AOTAutograd), the optimizer eager
            loss_fn = torch.compile(loss_fn)

        def run(order):
            idx = torch.from_numpy(order)
            for s in range(0, len(order), m):
                b = idx[s : s + m]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(Xt.index_select(0, b), Yt.index_select(0, b))
                loss.backward()
                opt.step()
        return run
    return setup


def _jax_step_fn(m):
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        a = x
        for w, b in params:
            a = jax.nn.sigmoid(a @ w.T + b)
        return 0.5 * jnp.sum((a - y) ** 2)

    grad = jax.grad(loss)

    def step(params, X, Y, idx):
        x, y = jnp.take(X, idx, axis=0), jnp.take(Y, idx, axis=0)
        g = grad(params, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - (ETA / m) * d, params, g)
    return jax, jnp, step


def _jax_params(jnp, sizes):
    ws, bs = init_params(sizes)
    return [(jnp.asarray(w), jnp.asarray(b[:, 0])) for w, b in zip(ws, bs)]


def setup_jax_step(sizes, m, X, Y):
    jax, jnp, step = _jax_step_fn(m)
    jstep = jax.jit(step, donate_argnums=0)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    state = {"p": _jax_params(jnp, sizes)}

    def run(order):
        idx = jnp.asarray(order.astype(np.int32).reshape(-1, m))
        p = state["p"]
        for i in range(idx.shape[0]):
            p = jstep(p, Xj, Yj, idx[i])
        jax.block_until_ready(p)
        state["p"] = p
    return run


def setup_jax_scan(sizes, m, X, Y):
    jax, jnp, step = _jax_step_fn(m)

    def epoch(params, X, Y, batches):
        return jax.lax.scan(lambda p, idx: (step(p, X, Y, idx), None), params, batches)[0]

    jepoch = jax.jit(epoch, donate_argnums=0)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    state = {"p": _jax_params(jnp, sizes)}

    def run(order):
        batches = jnp.asarray(order.astype(np.int32).reshape(-1, m))
        state["p"] = jax.block_until_ready(jepoch(state["p"], Xj, Yj, batches))
    return run


SETUPS: dict[str, Setup] = {
    "loop": setup_loop,
    "numpy": setup_fastbp("cpu"),
    "numpy-before": setup_fastbp("cpu"),
    "cpu-jit": setup_fastbp("cpu-jit"),
    "cpu-jit-before": setup_fastbp("cpu-jit"),
    "torch-eager": setup_torch(False),
    "torch-compile": setup_torch(True),
    "jax-step": setup_jax_step,
    "jax-scan": setup_jax_scan,
}
# methods whose per-step cost is large at small batches: they time a subset of the epoch
SCALED = {"loop", "torch-eager", "torch-compile", "jax-step", "numpy", "numpy-before"}


def measure(method: str, sizes: list[int], m: int, X: np.ndarray, Y: np.ndarray, repeat: int,
            seconds: float) -> dict[str, Any]:
    """Best samples/s of ``repeat`` epochs (after one warm-up) of ``method`` at batch ``m``."""
    N = X.shape[0] - X.shape[0] % m
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    run = SETUPS[method](sizes, m, X[:N], Y[:N])
    probe = N
    if method in SCALED:
        probe = min(N, max(20 * m, 2000 - 2000 % m or m))
    run(rng.permutation(N)[:probe])  # warm-up: compiles, allocates the buffers
    if hasattr(run, "settle"):
        run.settle(rng.permutation(N)[:probe])
    warm_s = time.perf_counter() - t0
    n = N
    if method in SCALED:
        t = time.perf_counter()
        run(rng.permutation(N)[:probe])
        rate = probe / (time.perf_counter() - t)
        n = int(min(N, max(20 * m, rate * seconds)))
        n -= n % m
    best = 0.0
    times = []
    for _ in range(repeat):
        order = rng.permutation(N)[:n]
        t = time.perf_counter()
        run(order)
        dt = time.perf_counter() - t
        times.append(dt)
        best = max(best, n / dt)
    return {"method": method, "sizes": sizes, "batch": m, "samples": n,
            "samples_per_s": best, "epoch_s": [round(x, 4) for x in times],
            "gflops": best * gemm_flops(sizes) / 1e9, "warmup_s": round(warm_s, 3)}


def blas_info() -> list[dict[str, Any]]:
    """The BLAS (and OpenMP) libraries loaded in this process, with kernel and thread count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture", "prefix")
    return [{k: i.get(k) for k in keys} for i in threadpool_info()]


def sgemm_peak(threads: int | None = None, n: int = 2048, repeat: int = 7) -> dict[str, Any]:
    """The best float32 GEMM rate this machine reaches on square ``n × n`` matrices (with at
    most ``threads`` threads): NumPy's BLAS, and the one fastbp calls directly when that is
    another (MKL); ``gflops`` is the higher."""
    if threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return sgemm_peak(None, n, repeat)
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    runs = {"numpy": lambda: np.matmul(a, b, out=c)}
    try:
        try:
            from fastbp.devices.cpu import cblas
        except ImportError:  # an older, flat fastbp in --before
            from fastbp import cblas

        lib = cblas.find()
        if lib is not None and lib.name == "mkl":
            gemm = cblas.FortranGemm(lib, "float32")
            runs["mkl"] = lambda: gemm(1.0, a.T, b.T, 0.0, c.T)
    except ImportError:
        pass
    peaks = {}
    for name, run in runs.items():
        run()
        peaks[name] = 2 * n**3 / min(_timed(run) for _ in range(repeat)) / 1e9
    return {"n": n, "gflops": max(peaks.values()), "by_library": peaks}


def _timed(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def worker(args: argparse.Namespace) -> None:
    """One method on one network shape, all batch sizes; prints one JSON line per figure."""
    sizes = [int(s) for s in args.sizes.split(",")]
    X, Y, source = load_data(args.n)
    for m in [int(b) for b in args.batches.split(",")]:
        r = measure(args.method, sizes, m, X, Y, args.repeat, args.seconds)
        r["data"] = source
        if args.method in ("numpy", "cpu-jit", *BEFORE):
            import fastbp

            r["fastbp_from"] = os.path.dirname(fastbp.__file__)
            r["gemm"] = _gemm_description()
        print(json.dumps(r), flush=True)
    print(json.dumps({"blas": blas_info(), "method": args.method}), flush=True)


def _gemm_description() -> str:
    """The GEMM library fastbp's epochs call, for the layered package and the flat one before
    it (``fastbp.cblas``), else SciPy's BLAS (older still)."""
    import importlib

    for name in ("fastbp.devices.cpu.cblas", "fastbp.cblas"):
        try:
            return importlib.import_module(name).description()
        except ImportError:
            continue
    return "SciPy's BLAS"


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, load, libraries, BLAS threads."""
    import numpy

    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": numpy.__version__, "uptime": _sh("uptime"),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                "OPENBLAS_CORETYPE", "MKL_NUM_THREADS",
                                                "NUMBA_NUM_THREADS") if os.environ.get(k)},
        "blas": blas_info(),
    }
    for mod in ("scipy", "numba", "torch", "jax"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment that limits every library of a worker to ``threads`` threads (BLAS, OpenMP,
    MKL, Numba, XLA's Eigen pool); nothing when ``threads`` is None (each library's default)."""
    if not threads:
        return {}
    n = str(threads)
    env = {k: n for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                          "NUMBA_NUM_THREADS")}
    if threads == 1:
        env["FASTBP_PREFETCH"] = "0"  # no helper thread gathering rows
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def driver(args: argparse.Namespace) -> None:
    """Run every method on every shape in its own process and write the results as JSON."""
    methods = args.methods.split(",")
    jobs = [(s, SMALL_BATCHES) for s in SMALL] + ([(BIG, BIG_BATCHES)] if not args.no_big else [])
    if args.only_batches:  # e.g. "10,1000,256": those mini-batch sizes of every network
        keep = {int(b) for b in args.only_batches.split(",")}
        jobs = [(s, tuple(b for b in bs if b in keep)) for s, bs in jobs]
    if args.more_batches:  # e.g. "10000": large batches of the small networks too
        more = tuple(int(b) for b in args.more_batches.split(","))
        jobs = [(s, bs + more) if s in SMALL else (s, bs) for s, bs in jobs]
    jobs = [(s, bs) for s, bs in jobs if bs]  # a network left with no batch size is not run
    os.environ.update(thread_env(args.threads))  # the book's runs too
    results: dict[str, Any] = {"machine": machine(), "sgemm_peak": sgemm_peak(args.threads),
                               "threads": args.threads or "library defaults",
                               "figures": [], "blas_by_method": {}, "errors": []}
    print(f"machine: {results['machine']['uptime']}; sgemm peak "
          f"{results['sgemm_peak']['gflops']:.1f} GFLOP/s", flush=True)
    for rnd, sizes, batches in [(r, s, b) for r in range(args.rounds) for s, b in jobs]:
        for method in methods:
            if sizes == BIG and method in ("loop", "torch-compile", "jax-step"):
                continue  # the big net is GEMM-bound: eager torch and the jax scan suffice
            n = BIG_N if sizes == BIG else args.n
            cmd = [sys.executable, __file__, "--worker", "--method", method,
                   "--sizes", ",".join(map(str, sizes)), "--batches", ",".join(map(str, batches)),
                   "--n", str(n), "--repeat", str(args.repeat), "--seconds", str(args.seconds)]
            env = dict(os.environ, **thread_env(args.threads))
            if method in BEFORE:
                if not args.before:
                    continue
                env["PYTHONPATH"] = os.path.abspath(args.before)
                # the older code plans with its own rules: never against the newer one's cache
                cache = env.get("FASTBP_CACHE")
                env["FASTBP_CACHE"] = os.path.join(cache, "before") if cache else \
                    os.path.join(tempfile.gettempdir(), "fastbp-before-cache")
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            for line in p.stdout.splitlines():
                rec = json.loads(line)
                if "blas" in rec:
                    results["blas_by_method"][method] = rec["blas"]
                    continue
                rec["round"] = rnd
                results["figures"].append(rec)
                print(f"{method:14s} {str(sizes):20s} batch {rec['batch']:5d}: "
                      f"{rec['samples_per_s']:12,.0f} samples/s  {rec['gflops']:7.1f} GFLOP/s",
                      flush=True)
            if p.returncode != 0:
                err = p.stderr.strip().splitlines()[-1:] or ["?"]
                results["errors"].append({"method": method, "sizes": sizes, "error": err[0]})
                print(f"{method}: failed: {err[0]}", flush=True)
    if args.book:
        results["book"] = [book_run(d) for d in args.book.split(",") for _ in range(args.repeat)]
    results["machine"]["uptime_after"] = _sh("uptime")
    # measured again at the end, the higher one stands: a first measurement on a machine that
    # has just started once read 108 GFLOP/s where the same machine reaches 195
    before, after = results["sgemm_peak"], sgemm_peak(args.threads)
    results["sgemm_peak"] = dict(max(before, after, key=lambda p: p["gflops"]),
                                 start_gflops=before["gflops"], end_gflops=after["gflops"])
    print(f"sgemm peak at the start {before['gflops']:.1f}, at the end {after['gflops']:.1f} "
          "GFLOP/s", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(report(results))
    if args.rounds > 1:
        print()
        print(round_ratios(results))


def book_run(device: str) -> dict[str, Any]:
    """The book's whole run, ``fastbp train`` with its defaults (``[784,30,10]``, 30 epochs,
    batch 10, η = 3.0, test accuracy after each epoch), timed from the shell: wall seconds of the
    whole command (start-up, loading MNIST, training, evaluation) and the best accuracy."""
    cmd = [sys.executable, "-m", "fastbp", "train", "--device", device, "--seed", "1"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    best = [ln for ln in p.stdout.splitlines() if ln.startswith("best test accuracy")]
    rec = {"device": device, "wall_s": round(wall, 2), "best": best[0] if best else None,
           "rc": p.returncode}
    print(f"book run on {device}: {wall:.2f} s, {rec['best']}", flush=True)
    return rec


def best_figures(figures: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The fastest figure of each ``(method, sizes, batch)``: over the rounds of one run, or
    over several runs (on a shared machine a figure is only ever lowered by others' load)."""
    best: dict[tuple, dict[str, Any]] = {}
    for fig in figures:
        key = (fig["method"], tuple(fig["sizes"]), fig["batch"])
        if key not in best or fig["samples_per_s"] > best[key]["samples_per_s"]:
            best[key] = fig
    return best


def shapes(figures: list[dict[str, Any]]) -> list[tuple[tuple, int]]:
    """The ``(sizes, batch)`` pairs of ``figures``, in the table's order."""
    return sorted({(tuple(f["sizes"]), f["batch"]) for f in figures},
                  key=lambda k: (len(k[0]), k[0][1], k[1]))


def report(results: dict[str, Any]) -> str:
    """A Markdown table: samples/s of every method per shape and batch."""
    figs = results["figures"]
    methods = [m for m in METHODS if any(f["method"] == m for f in figs)]
    lines = ["| sizes | batch | " + " | ".join(methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    keys = shapes(figs)
    best = best_figures(figs)
    for sizes, m in keys:
        row = []
        for meth in methods:
            f = best.get((meth, sizes, m))
            row.append(f"{f['samples_per_s']:,.0f}" if f else "")
        lines.append(f"| {list(sizes)} | {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


PEERS = ("torch-eager", "torch-compile", "jax-step", "jax-scan")


def round_ratios(results: dict[str, Any], ours: str = "cpu-jit") -> str:
    """``ours`` against the fastest peer in each round (``--rounds``), and the ratio of the
    bests (Markdown): on a machine whose speed drifts from second to second, a ratio within a
    round compares figures taken minutes apart, not a whole run apart."""
    figs = results["figures"]
    peers = [p for p in PEERS if any(f["method"] == p for f in figs)]
    lines = [f"| sizes | batch | {ours} ÷ best peer, bests | each round |", "|---|---:|---:|---|"]
    keys = shapes(figs)
    rounds = sorted({f.get("round", 0) for f in figs})
    by_round = [best_figures([f for f in figs if f.get("round", 0) == r]) for r in rounds]
    every = best_figures(figs)
    for sizes, m in keys:
        def ratio(best: dict[tuple, dict[str, Any]], sizes: tuple = sizes, m: int = m
                  ) -> float | None:
            """``ours`` over the fastest peer among ``best``'s figures (None: a side missing)."""
            top = max((best[(p, sizes, m)]["samples_per_s"] for p in peers
                       if (p, sizes, m) in best), default=0.0)
            mine = best.get((ours, sizes, m))
            return mine["samples_per_s"] / top if mine and top else None

        overall = ratio(every)
        if overall is not None:
            each = [r for r in map(ratio, by_round) if r is not None]
            lines.append(f"| {list(sizes)} | {m} | {overall:.2f}× | "
                         + ", ".join(f"{r:.2f}" for r in each) + " |")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> str:
    """The issue's targets, each with the figures that meet it or not (Markdown)."""
    figs = best_figures(results["figures"])  # the best of the rounds

    def rate(method: str, sizes: tuple, m: int) -> float | None:
        f = figs.get((method, sizes, m))
        return f["samples_per_s"] if f else None

    lines = ["| target | sizes | batch | fastbp | reference figure | ratio | met |",
             "|---|---|---:|---:|---|---:|:---:|"]
    for sizes in map(tuple, SMALL):
        for m in SMALL_BATCHES:
            peers = [(p, rate(p, sizes, m)) for p in PEERS if rate(p, sizes, m)]
            jit = rate("cpu-jit", sizes, m)
            if peers and jit:
                name, best = max(peers, key=lambda x: x[1])
                need = 1.2 if m >= 100 else 1.0
                lines.append(f"| cpu-jit ≥ {need}× best peer | {list(sizes)} | {m} | {jit:,.0f} | "
                             f"{name} {best:,.0f} | {jit / best:.2f} | "
                             f"{'yes' if jit >= need * best else 'no'} |")
            eager, cpu = rate("torch-eager", sizes, m), rate("numpy", sizes, m)
            if eager and cpu:
                lines.append(f"| numpy > torch eager | {list(sizes)} | {m} | {cpu:,.0f} | "
                             f"torch-eager {eager:,.0f} | {cpu / eager:.2f} | "
                             f"{'yes' if cpu > eager else 'no'} |")
        loop = rate("loop", sizes, 10)
        for meth in ("cpu-jit", "numpy"):
            r = rate(meth, sizes, 10)
            if loop and r:
                ok = "yes" if r >= 15 * loop else "no"
                lines.append(f"| {meth} ≥ 15× per-sample loop | {list(sizes)} | 10 | {r:,.0f} | "
                             f"loop {loop:,.0f} | {r / loop:.1f} | {ok} |")
    peak = results["sgemm_peak"]["gflops"]
    for meth in ("cpu-jit", "numpy", "torch-eager", "jax-scan"):
        for m in BIG_BATCHES:
            f = figs.get((meth, tuple(BIG), m))
            if f:
                ok = "yes" if f["gflops"] >= 0.75 * peak else "no"
                lines.append(f"| ≥ 75 % of sgemm peak ({meth}) | {BIG} | {m} | "
                             f"{f['gflops']:.0f} GFLOP/s | peak {peak:.0f} GFLOP/s | "
                             f"{f['gflops'] / peak:.0%} | {ok} |")
    for b in results.get("book", []):
        acc = b["best"] or ""
        pct = float(acc.split()[-2]) if acc.endswith("%") else 0.0
        ok = b["wall_s"] < 5 and pct >= 95
        lines.append(f"| book run < 5 s, ≥ 95 % ({b['device']}) | [784, 30, 10] | 10 | "
                     f"{b['wall_s']:.2f} s | {acc} | | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def merge(paths: list[str]) -> dict[str, Any]:
    """The best figure of each (method, sizes, batch) over several runs' JSON files: on a shared
    machine a figure is only ever lowered by others' load, so the best is the machine's."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    best = best_figures([dict(fig, run=os.path.basename(path))
                         for path, run in zip(paths, runs) for fig in run["figures"]])
    merged = dict(runs[0])
    merged["figures"] = list(best.values())
    merged["runs"] = [{"file": os.path.basename(p), "uptime": r["machine"]["uptime"],
                       "uptime_after": r["machine"].get("uptime_after"),
                       "sgemm_peak": r["sgemm_peak"]} for p, r in zip(paths, runs)]
    merged["sgemm_peak"] = max((r["sgemm_peak"] for r in runs), key=lambda x: x["gflops"])
    merged["book"] = [b for r in runs for b in r.get("book", [])]
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--n", type=int, default=50_000, help="samples in one epoch (default 50000)")
    p.add_argument("--repeat", type=int, default=3, help="timed epochs; the best counts")
    p.add_argument("--seconds", type=float, default=1.0, help="work per timed subset epoch")
    p.add_argument("--rounds", type=int, default=1, help="run every figure this many times, "
                   "the methods alternating in each round; the best counts, and each round's "
                   "ratios are printed too")
    p.add_argument("--no-big", action="store_true", help="skip [784,1024,1024,10]")
    p.add_argument("--only-batches", help="time only these mini-batch sizes (e.g. 10,1000,256)")
    p.add_argument("--more-batches", help="time the small networks at these mini-batch sizes "
                   "too (e.g. 10000)")
    p.add_argument("--book", help="also time the book's run on these devices (e.g. cpu,cpu-jit)")
    p.add_argument("--threads", type=int, help="limit every library to N threads "
                   "(default: each library's own setting)")
    p.add_argument("--before", help="a directory holding an older fastbp package (numpy-before)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--report", help="print the table of a results JSON and exit")
    p.add_argument("--merge", nargs="+", help="results JSONs to merge (best of each) into --out")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--sizes", help=argparse.SUPPRESS)
    p.add_argument("--batches", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.merge:
        merged = merge(args.merge)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(merged, f, indent=1)
        print(report(merged))
        print()
        print(targets(merged))
    elif args.report:
        with open(args.report) as f:
            results = json.load(f)
        print(report(results))
        print()
        print(targets(results))
    elif args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
