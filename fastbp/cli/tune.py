"""``fastbp tune``: plan the common training configurations ahead (:mod:`fastbp.devices.planner`)
and print every candidate's speed, so that training starts on the fastest at once."""

from __future__ import annotations

import argparse

from .options import parse_sizes

COMMON = {(784, 30, 10): (1, 10, 100, 1000), (784, 100, 10): (1, 10, 100, 1000),
          (784, 1024, 1024, 10): (256, 1024)}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=parse_sizes, nargs="+", default=None, metavar="SIZES",
                   help="networks to plan, e.g. 784,30,10 784,100,10 (default: [784,30,10] and "
                   "[784,100,10] at batches 1, 10, 100, 1000, [784,1024,1024,10] at 256, 1024)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, metavar="M",
                   help="batch sizes for --sizes (default: 1 10 100 1000)")
    p.add_argument("--device", default="cpu-jit",
                   help="the device to plan (default: cpu-jit, the default device without a GPU)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="floating-point type (default: float32)")
    p.add_argument("--samples", type=int, default=50_000,
                   help="MNIST-shaped synthetic samples, as many as MNIST has (default: 50000)")


def run(args: argparse.Namespace) -> int:
    import os
    import time

    import numpy as np

    from ..core.validate import check_count
    from ..devices import planner
    from ..model.network import Network

    samples = check_count("--samples", args.samples, low=1)
    jobs = ({tuple(s): tuple(args.batch_sizes or (1, 10, 100, 1000)) for s in args.sizes}
            if args.sizes else COMMON)
    check_jobs(jobs, samples, args.dtype)  # before any data is made
    for m in {m for batches in jobs.values() for m in batches}:
        check_count("--batch-sizes", m, low=1, high=samples)
    os.environ[planner.ENV_VAR] = "measure"
    t0 = time.perf_counter()
    print(f"fastbp tune: {args.device}, {args.dtype}, {samples:,} samples; plan cache "
          f"{planner.cache_path()}")
    print(f"{'configuration':<40} {'chosen':<24} {'outcome':<50} candidates (samples/s)")
    recorded = busy = other = 0
    rng = np.random.default_rng(0)
    for sizes, batches in jobs.items():
        X = (rng.random((sizes[0], samples)) < 0.19) * rng.random((sizes[0], samples))
        labels = rng.integers(0, sizes[-1], samples)
        for m in batches:
            net = Network(list(sizes), device=args.device, dtype=args.dtype, seed=0,
                          init="scaled")
            plan = net.epoch_plan(X, labels, batch_size=m, eta=0.1)
            plan.start(net.backend.index_array(np.arange(samples)))
            # a device whose trials are real steps runs them now (tune_plan), else plans
            choose = getattr(net.backend, "tune_plan", getattr(net.backend, "plan_for", None))
            key = planner.config_key(net.device, sizes, m, args.dtype)
            if choose is None:
                print(f"{key:<40} {'(nothing to plan)':<24}")
                continue
            choice = choose(plan)
            outcome = _outcome(choice, samples)
            recorded += choice.source == "measured"
            busy += choice.source.startswith("measured on a busy")
            other += not choice.source.startswith("measured")
            speeds = ", ".join(f"{name} {speed:,.0f}" for name, speed in
                               sorted(choice.speeds.items(), key=lambda kv: -kv[1]))
            print(f"{key:<40} {choice.name:<24} {outcome:<50} {speeds}", flush=True)
    seconds = time.perf_counter() - t0
    print(f"fastbp tune: {recorded + busy + other} configurations in {seconds:.1f} s: "
          f"{recorded} measured and recorded in {planner.cache_path()}"
          + (f", {busy + other} not recorded" if busy + other else ""))
    if busy:
        print(f"fastbp tune: {busy} configuration(s) were measured while other processes kept "
              "the machine busy, which skews every trial, so nothing was recorded for them; "
              "run `fastbp tune` again when the machine is quiet")
    if other:
        print(f"fastbp tune: {other} configuration(s) were not measured (see the outcome "
              f"column; a trial needs at least {planner_rows()} samples: --samples)")
    return 0


def planner_rows() -> str:
    """The fewest samples a CPU trial measures, for the message."""
    try:
        from fastbp_numba.planning import TRIAL_ROWS
    except ImportError:
        return "a few thousand"
    return f"{TRIAL_ROWS:,}"


RUN_EPOCHS = 30  # the book's run: what planning's cost is set against


def planning_share(choice: object, samples: int, epochs: int = RUN_EPOCHS) -> float | None:
    """What measuring cost (``choice.seconds``: on ``cpu-jit`` the time its trials, real
    training steps, took beyond what the chosen candidate takes for them), as a fraction of
    ``epochs`` epochs of ``samples`` at the chosen candidate's trial speed (None where no
    speed is known)."""
    speed = getattr(choice, "speed", None)
    if not speed:
        return None
    return getattr(choice, "seconds", 0.0) / (epochs * samples / speed)


def _outcome(choice: object, samples: int) -> str:
    """One phrase for the table: what the planner did with a configuration, and what measuring
    cost beside a 30-epoch run of the chosen candidate."""
    source = getattr(choice, "source", "")
    seconds = getattr(choice, "seconds", 0.0)
    share = planning_share(choice, samples)
    cost = f"{seconds:.1f} s" + (f" ({share:.1%} of {RUN_EPOCHS} epochs)" if share else "")
    if source == "measured":
        return f"measuring cost {cost}, recorded"
    if source.startswith("measured"):
        return f"busy: measuring cost {cost}, not recorded"
    return source


def check_jobs(jobs: dict[tuple[int, ...], tuple[int, ...]], samples: int, dtype: str) -> None:
    """Every ``--sizes`` a network's sizes, every ``--batch-sizes`` a count, and the host room
    for the largest job's synthetic data and parameters (:func:`host_bytes`), or one line."""
    from ..core.memory import check_host_room
    from ..core.validate import check_count, check_sizes

    for sizes, batches in jobs.items():
        check_sizes(list(sizes))
        for m in batches:
            check_count("--batch-sizes", m, low=1)
    sizes = max(jobs, key=lambda s: host_bytes(s, samples, dtype))
    check_host_room(host_bytes(sizes, samples, dtype),
                    f"--samples {samples:,} for --sizes {','.join(map(str, sizes))}",
                    "use fewer --samples or smaller --sizes")


def host_bytes(sizes: tuple[int, ...], samples: int, dtype: str) -> int:
    """About the host memory of one job at its peak: the synthetic ``X`` while it is made
    (two float64 draws, a mask and their product: 25 bytes an entry), its copy in ``dtype``
    for the device twice over, and the parameters drawn in float64 and cast."""
    import numpy as np

    itemsize = np.dtype(dtype).itemsize
    params = sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))
    return sizes[0] * samples * (25 + 2 * itemsize) + 8 * samples + params * (8 + itemsize)
