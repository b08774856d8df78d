"""Options shared by the subcommands of the ``fastbp`` command line."""

from __future__ import annotations

import argparse
from typing import Any

DEVICE_HELP = ("cpu, cpu-jit, cuda, cuda:N, auto or an installed plugin's name (default: "
               "$FASTBP_DEVICE, else auto: a GPU that works, else cpu-jit; `fastbp devices` "
               "lists them)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and leaves more room for option names."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def parse_sizes(text: str) -> list[int]:
    """``784,30,10`` → ``[784, 30, 10]``."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 784,30,10, got {text!r}") from None


def parse_schedule(text: str) -> tuple[int, int]:
    """``10,7`` → ``(10, 7)``: epochs without improvement before η is halved, halvings."""
    try:
        n, k = (int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--schedule looks like 10,7 (N epochs, K halvings), "
                                         f"got {text!r}") from None
    if n < 1 or k < 1:
        raise argparse.ArgumentTypeError(f"--schedule needs N >= 1 and K >= 1, got {text!r}")
    return n, k


def add_data_arg(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``--data DIR|NAME``, the folder of the MNIST files or a data set's name, with
    ``--data-dir`` as a hidden alias."""
    p.add_argument("--data", metavar="DIR|NAME", default=None, help=help_text or (
        "folder of the four MNIST IDX files, gzip or plain (default: $FASTBP_DATA, else "
        "~/.cache/fastbp/mnist, else a download into it); or a data set in the same format, "
        "fashion-mnist or kmnist (from ~/.cache/fastbp/NAME, else a download into it), or "
        "NAME:DIR for its files in DIR"))
    p.add_argument("--data-dir", dest="data", default=None, help=argparse.SUPPRESS)


def load_data(value: str | None) -> tuple[Any, str]:
    """The data set ``--data`` names (:func:`fastbp.data.sets.parse_source`) and its title."""
    from ..data.sets import load, parse_source, title_of

    name, path = parse_source(value)
    return load(name, path), title_of(name)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device``."""
    p.add_argument("--device", default=None, help=DEVICE_HELP)


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``."""
    add_device_arg(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="floating-point type of the parameters and the work (default: float32)")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The options every command that trains takes, with the book's defaults."""
    p.add_argument("--sizes", type=parse_sizes, default=[784, 30, 10], metavar="N,N,...",
                   help="layer sizes, input first, comma-separated: 784 inputs (28 × 28 pixels), "
                   "hidden layers, 10 outputs (default: 784,30,10)")
    p.add_argument("--epochs", type=int, default=30, metavar="N",
                   help="passes over the training images; with --resume, counts the epochs "
                   "already trained too (default: 30)")
    p.add_argument("--batch-size", type=int, default=10, metavar="M",
                   help="samples per SGD step, the mini-batch size m (default: 10)")
    p.add_argument("--eta", type=float, default=3.0, metavar="ETA",
                   help="learning rate η (default: 3.0)")
    p.add_argument("--lmbda", type=float, default=0.0, metavar="LMBDA",
                   help="L2 regularisation λ, the book's chapter 3 (default: 0, none)")
    p.add_argument("--momentum", type=float, default=0.0, metavar="MU",
                   help="momentum μ in [0, 1): v ← μv − η∇C, w ← w + v (chapter 3) "
                   "(default: 0, plain SGD)")
    p.add_argument("--l1", type=float, default=0.0, metavar="LMBDA1",
                   help="L1 regularisation λ₁: each step also takes (ηλ₁/n) sgn(w) off the "
                   "weights (chapter 3) (default: 0, none)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="drop each hidden neuron with probability P for one mini-batch "
                   "(chapter 3; the same masks on every device for a given --seed) "
                   "(default: 0, none)")
    p.add_argument("--cost", default="quadratic",
                   choices=["quadratic", "cross-entropy", "log-likelihood"],
                   help="the cost C: quadratic ½‖y − a‖² (chapter 1), cross-entropy, or "
                   "log-likelihood −ln a^L_y with a softmax output layer (chapter 3) "
                   "(default: quadratic)")
    p.add_argument("--activation", default="sigmoid", choices=["sigmoid", "tanh", "relu"],
                   help="the hidden layers' neuron (the output layer follows --cost) "
                   "(default: sigmoid)")
    p.add_argument("--init", default=None, choices=["standard", "scaled"],
                   help="initial weights: standard draws weights and biases from N(0, 1) "
                   "(chapter 1); scaled divides each weight by √n_in, the number of inputs of "
                   "its neuron (chapter 3) (default: scaled with --cost cross-entropy, as "
                   "the book's network2.py; else standard, as its network.py)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of the initial weights and the shuffling: the same seed gives "
                   "the same run (default: a fresh random seed each run)")
    add_data_arg(p)
    add_device_args(p)
