"""The subcommands of the ``fastbp`` command line, one module each."""

from __future__ import annotations

import argparse


def parse_sizes(text: str) -> list[int]:
    """``784,30,10`` → ``[784, 30, 10]``."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 784,30,10, got {text!r}") from None


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, auto or a plugin's name (default: $FASTBP_DEVICE, "
                   "else cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The options every command that trains takes, with the book's defaults."""
    p.add_argument("--sizes", type=parse_sizes, default=[784, 30, 10], help="layer sizes")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--eta", type=float, default=3.0, help="learning rate η")
    p.add_argument("--lmbda", type=float, default=0.0, help="L2 regularisation λ")
    p.add_argument("--cost", default="quadratic", choices=["quadratic", "cross-entropy"])
    p.add_argument("--init", default="standard", choices=["standard", "scaled"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data", default=None, help="directory of the MNIST IDX files")
    add_device_args(p)
