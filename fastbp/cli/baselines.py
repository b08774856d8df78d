"""``fastbp baselines``: random guessing, the book's average-darkness classifier and a trained
network on the MNIST test set, as one table (see :mod:`fastbp.baselines`)."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", default=None,
                   help="score this saved model as the network (default: train one now)")
    p.add_argument("--epochs", type=int, default=1,
                   help="epochs of [784, 30, 10] (η = 3, batches of 10) to train when no "
                   "--model is given (default 1)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the random guesses and of the network trained here")
    p.add_argument("--data", default=None, help="directory of the MNIST IDX files")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, auto or a plugin's name (default: $FASTBP_DEVICE, "
                   "else cpu)")


def run(args: argparse.Namespace) -> int:
    from ..core.validate import check_count
    from ..data.mnist import load_mnist
    from ..model.baselines import format_table, table
    from ..model.network import Network
    from ..model.persist import load

    if args.model:
        net, name = load(args.model, device=args.device), f"network ({args.model})"
    else:
        epochs = check_count("--epochs", args.epochs, low=0)
        net = Network([784, 30, 10], device=args.device, seed=args.seed)
        name = f"network [784, 30, 10], {epochs} epoch{'s' if epochs != 1 else ''}"
    data = load_mnist(args.data)
    if not args.model and epochs:
        print(f"training {net} for {epochs} epoch(s) on {len(data.train):,} images ...",
              flush=True)
        net.train(data.train.X, data.train.labels, epochs=epochs, batch_size=10, eta=3.0)
    rows = table(data, net, seed=args.seed, network_name=name)
    print(f"MNIST test set, {len(data.test):,} images; average darkness fitted on the "
          f"{len(data.train):,} training images")
    print(format_table(rows))
    return 0
