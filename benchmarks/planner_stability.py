"""Does the planner choose the fastest candidate, and the same one every time?

For each configuration: ``--caches`` fresh plan caches in a row, each measuring the candidates
as a first run would (its trials, real steps of the first epochs, run at once: ``tune_plan``),
then every candidate forced
(``FASTBP_PLAN=<candidate>``) for whole epochs, best of ``--repeat``; one line each::

    python benchmarks/planner_stability.py --out planner.json

Run it on a quiet machine, BLAS variables unset (DESIGN.md): it times, and trials that other
processes disturbed record the default (see ``fastbp_numba.planning.decide``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

CONFIGS = [((784, 30, 10), 1000), ((784, 30, 10), 10_000), ((784, 100, 10), 100),
           ((784, 100, 10), 1000), ((784, 1024, 1024, 10), 256), ((784, 1024, 1024, 10), 1024)]


def data(n: int, n_in: int = 784) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = ((rng.random((n_in, n)) < 0.19) * rng.random((n_in, n))).astype(np.float32)
    return X, rng.integers(0, 10, n)


def choose_fresh(sizes: tuple[int, ...], m: int, X: np.ndarray, labels: np.ndarray) -> dict:
    """One fresh cache: what the planner measures and chooses for a first run (measured even
    where the machine looks busy, saying so in the source)."""
    import fastbp
    from fastbp.devices import planner

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FASTBP_CACHE"], os.environ["FASTBP_PLAN"] = cache, "measure"
        planner._warned.clear()
        net = fastbp.Network(list(sizes), device="cpu-jit", seed=0, init="scaled")
        plan = net.epoch_plan(X, labels, batch_size=m, eta=0.1)
        plan.start(net.backend.index_array(np.arange(X.shape[1])))
        choice = net.backend.tune_plan(plan)  # its trials, real steps, run now
        return {"choice": choice.name, "source": choice.source, "seconds": choice.seconds,
                "speeds": choice.speeds}


def forced(sizes: tuple[int, ...], m: int, X: np.ndarray, labels: np.ndarray, name: str,
           repeat: int) -> float:
    """Samples/s of candidate ``name`` over whole epochs (the first one warms up)."""
    import fastbp

    os.environ["FASTBP_PLAN"] = name
    net = fastbp.Network(list(sizes), device="cpu-jit", seed=0, init="scaled")
    net.train(X, labels, epochs=1, batch_size=m, eta=0.01)
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        net.train(X, labels, epochs=1, batch_size=m, eta=0.01)
        best = max(best, X.shape[1] / (time.perf_counter() - t0))
    return best


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--caches", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--out", default=None)
    p.add_argument("--only", nargs="+", default=None, metavar="SIZES:M",
                   help="configurations to run, e.g. 784,100,10:100 (default: all of CONFIGS)")
    args = p.parse_args(argv)
    configs = CONFIGS if not args.only else [
        (tuple(int(v) for v in c.split(":")[0].split(",")), int(c.split(":")[1]))
        for c in args.only]
    from fastbp_numba import planning

    from fastbp.bench.machine import load_average
    from fastbp.devices.cpu.backend import cpu_model

    machine = {"cpu": cpu_model(), "load_average": load_average()}
    print(f"machine: {machine['cpu']}; load average {machine['load_average']}")
    X, labels = data(args.n)
    results = []
    for sizes, m in configs:
        runs = [choose_fresh(sizes, m, X, labels) for _ in range(args.caches)]
        names = planning.candidates(list(sizes), m, args.n)
        speeds = {name: forced(sizes, m, X, labels, name, args.repeat) for name in names}
        fastest = max(speeds, key=speeds.__getitem__)
        chosen = [r["choice"] for r in runs]
        cost = np.mean([r["seconds"] for r in runs])
        ranked = sorted(speeds.items(), key=lambda kv: -kv[1])
        print(f"{str(list(sizes)):<22} m={m:<6} chosen {chosen} (planning {cost:.2f} s); "
              "forced: " + ", ".join(f"{k} {v:,.0f}" for k, v in ranked)
              + f"; fastest {fastest}", flush=True)
        results.append({"sizes": list(sizes), "batch_size": m, "runs": runs,
                        "forced": speeds, "fastest": fastest})
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
