"""``fastbp train``: train on MNIST with the book's defaults, one line per epoch."""

from __future__ import annotations

import argparse

from . import add_training_args


def configure(p: argparse.ArgumentParser) -> None:
    add_training_args(p)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N of the 50,000 training images only (quick runs)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: run as `mpiexec -n P fastbp train --distributed`")


def run(args: argparse.Namespace) -> int:
    if args.distributed and not getattr(args, "in_mpi", False):
        from ..distributed import run_command
        return run_command(run, args)  # this rank's device; stdout and saves on rank 0 only
    from ..datasets import load_mnist
    from ..network import Network
    from ..validate import check_count

    # The network first: a bad --device, --sizes or --init fails before MNIST is read.
    net = Network(args.sizes, cost=args.cost, device=args.device, dtype=args.dtype,
                  seed=args.seed, init=args.init)
    data = load_mnist(args.data)
    n = len(data.train)
    if args.limit is not None:
        n = check_count("--limit", args.limit, low=1, high=n)
    X, labels = data.train.X[:, :n], data.train.labels[:n]
    print(f"fastbp: {net} on {n:,} MNIST training images", flush=True)
    fit = net.train
    if args.distributed:
        from ..distributed import trainer
        fit = trainer(net)
    history = fit(X, labels, epochs=args.epochs,
                        batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda,
                        test=(data.test.X, data.test.labels), verbose=True)
    if history.best_accuracy is not None:
        print(f"best test accuracy {100 * history.best_accuracy:.2f} %")
    return 0
