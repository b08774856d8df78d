"""``fastbp baselines``: random guessing, the book's average-darkness classifier and a trained
network on the MNIST test set, as one table (see :mod:`fastbp.model.baselines`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_data_arg, add_device_arg, load_data


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", default=None,
                   help="score this saved model as the network (default: train one now)")
    p.add_argument("--epochs", type=int, default=1, metavar="N",
                   help="epochs of [784, 30, 10] (η = 3, batches of 10) to train when no "
                   "--model is given (default: 1)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the random guesses and of the network trained here (default: "
                   "a fresh random seed each run, as fastbp train)")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write baselines.png (a bar per method) and the network's "
                   "confusion.png and misclassified.png to DIR (needs matplotlib: "
                   "pip install 'fastbp[plot]')")
    add_data_arg(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..core.validate import check_count
    from ..model.baselines import format_table, table
    from ..model.network import Network
    from ..model.persist import load

    if args.plot is not None:
        from ..io.plots import _figure
        from ..io.targets import check_folder

        check_folder(args.plot, f"--plot {args.plot}",  # writable, before any work
                     ("baselines.png", "confusion.png", "misclassified.png"))
        _figure((1, 1))  # matplotlib missing: say so before any work
    if args.model is not None and not args.model:
        from ..errors import ConfigError

        raise ConfigError("--model needs a model file, got an empty string")
    if args.model:
        net, name = load(args.model, device=args.device), f"network ({args.model})"
    else:
        epochs = check_count("--epochs", args.epochs, low=0)
        net = Network([784, 30, 10], device=args.device, seed=args.seed)
        name = f"network [784, 30, 10], {epochs} epoch{'s' if epochs != 1 else ''}"
    data = load_data(args.data)[0]
    if not args.model and epochs:
        print(f"training {net} for {epochs} epoch(s) on {len(data.train):,} images ...",
              flush=True)
        net.train(data.train.X, data.train.labels, epochs=epochs, batch_size=10, eta=3.0)
    rows = table(data, net, seed=args.seed, network_name=name)
    print(f"MNIST test set, {len(data.test):,} images; average darkness fitted on the "
          f"{len(data.train):,} training images"
          + ("" if args.seed is not None else "; random guesses unseeded (--seed S repeats)"))
    print(format_table(rows))
    if args.plot:
        from ..io.plots import accuracy_bars, evaluation_pictures

        paths = [accuracy_bars([(r.method, r.evaluation.accuracy, r.book) for r in rows],
                               Path(args.plot) / "baselines.png")]
        paths += evaluation_pictures(data.test.X, rows[-1].evaluation, args.plot)
        print("pictures: " + ", ".join(str(p) for p in paths))
    return 0
