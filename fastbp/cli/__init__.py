"""The ``fastbp`` command line. Each subcommand is a module of :mod:`fastbp.cli` with
``configure(parser)`` and ``run(args) -> exit code``; it imports what it needs when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import FastbpError

SUBCOMMANDS = {
    "train": "train a network on MNIST, one line per epoch",
    "devices": "list every backend and device fastbp can see, and why one cannot run",
    "evaluate": "score saved models on the MNIST test set: accuracy, confusion matrix, mistakes",
    "baselines": "random guess, average darkness and a network on the MNIST test set, one table",
    "bench": "time training throughput per device, batch size and network size; compare runs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastbp", description="Backpropagation in matrix form on the CPU or a CUDA GPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"fastbp.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except FastbpError as exc:
        print(f"fastbp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130
