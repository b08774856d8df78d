"""The ``fastbp`` command line. Each subcommand is a module of :mod:`fastbp.cli` with
``configure(parser)`` and ``run(args) -> exit code``; it imports what it needs when it runs.

``fastbp`` alone (or ``python -m fastbp``) prints the help to stdout and, as argparse does for
a missing argument, exits with status 2; ``fastbp --version`` prints the version."""

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
    "tune": "measure how each device runs the common configurations here, and cache the plans",
}


EPILOG = "`fastbp COMMAND --help` explains a command's options and their defaults."


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``fastbp`` and its subcommands."""
    from ..version import __version__
    from .options import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="fastbp", description="Backpropagation in matrix form on the CPU or a CUDA GPU.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"fastbp.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        module.configure(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastbp`` with ``argv`` (default: the command line); returns the exit status.
    A Ctrl-C at any moment, while the command's modules load too, is one line and status 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C; SIGTERM during training (cli.interrupts)
        print(f"fastbp: {str(exc) or 'interrupted'}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 130))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:  # no command: the help, and argparse's status
        parser.print_help()
        print("fastbp: error: a COMMAND is required (see above)", file=sys.stderr)
        raise SystemExit(2)
    try:
        from .environment import check_environment

        check_environment()  # a bad FASTBP_* value: one line, before any work
        return int(args.run(args) or 0)
    except FastbpError as exc:
        print(f"fastbp: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 2))  # 2: refused; 1: failed (a save, at the end)
    except OSError as exc:  # a file that failed in a way no check could foresee
        print(f"fastbp: error: {exc}", file=sys.stderr)
        return 1
