"""``fastbp train``: train on MNIST with the book's defaults, one line per epoch."""

from __future__ import annotations

import argparse

from . import add_training_args


def configure(p: argparse.ArgumentParser) -> None:
    add_training_args(p)


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_mnist
    from ..network import Network

    data = load_mnist(args.data)
    net = Network(args.sizes, cost=args.cost, device=args.device, dtype=args.dtype,
                  seed=args.seed, init=args.init)
    print(f"fastbp: {net} on {len(data.train):,} MNIST training images", flush=True)
    history = net.train(data.train.X, data.train.labels, epochs=args.epochs,
                        batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda,
                        test=(data.test.X, data.test.labels), verbose=True)
    if history.best_accuracy is not None:
        print(f"best test accuracy {100 * history.best_accuracy:.2f} %")
    return 0
