"""``fastbp train``: train on MNIST with the book's defaults, one line (or bar) per epoch; save,
checkpoint, resume, stop early, monitor and plot (see :mod:`fastbp.cli.session`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

from .layers import LAYERS_HELP, NET_HELP
from .options import add_training_args, load_data, parse_schedule
from .session import Session, add_keep_args


def configure(p: argparse.ArgumentParser) -> None:
    add_training_args(p)
    p.add_argument("--net", default=None, metavar="NAME", help=NET_HELP)
    p.add_argument("--layers", default=None, metavar="SPEC", help=LAYERS_HELP)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N of the 50,000 training images only, for quick runs "
                   "(default: all of them)")
    p.add_argument("--expand", action="store_true",
                   help="train on the book's expanded set: each training image and four copies "
                   "shifted one pixel down, up, right and left (250,000 for MNIST)")
    p.add_argument("--schedule", type=parse_schedule, default=None, metavar="N,K",
                   help="chapter 3's schedule: halve η after N epochs without a better "
                   "validation accuracy, stop when that happens the K-th time")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: run as `mpiexec -n P fastbp train --distributed`, "
                   "with P at most the number of cores (or GPUs)")
    add_keep_args(p)


def run(args: argparse.Namespace) -> int:
    if args.distributed and not getattr(args, "in_mpi", False):
        from ..parallel.train import run_command
        return run_command(run, args)  # this rank's device; stdout and saves on rank 0 only

    # The network first (new, or --resume's): a bad --device, --sizes or --init, or a bad
    # model file, fails before MNIST is read. What the library logs quietly (the device 'auto'
    # chose, the plan a device runs) is shown here.
    with shown_log(lambda line: None if args.quiet else print(line, flush=True)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..core.config import TrainConfig
    from ..core.validate import check_count

    session = Session(args)
    net = session.net
    TrainConfig(epochs=args.epochs, batch_size=args.batch_size, eta=args.eta,  # before any data
                lmbda=args.lmbda, momentum=args.momentum, l1=args.l1, dropout=args.dropout)
    data, title = load_data(args.data)
    n = len(data.train)
    if args.limit is not None:
        n = check_count("--limit", args.limit, low=1, high=n)
    X, labels = data.train.X[:, :n], data.train.labels[:n]
    if args.expand:
        from ..data.expand import expand
        from ..data.mnist import Split

        train = expand(Split(data.train.images[:n], labels))
        X, labels, n = train.X, train.labels, len(train)
    session.say(f"fastbp: {net} on {n:,} {title} training images"
                + (f", resuming at epoch {len(net.history)}" if args.resume else ""))
    fit = net.train
    if args.distributed:
        from ..parallel.train import trainer
        fit = trainer(net)
    options = session.train_options(data, X, labels)
    with session.keeping():  # a stopped run keeps its finished epochs (fastbp.cli.interrupts)
        fit(X, labels, epochs=session.epochs_left,
            batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda,
            momentum=args.momentum, l1=args.l1, dropout=args.dropout,
            test=(data.test.X, data.test.labels), **options)
    session.finish(data)  # final save, pictures, best test accuracy
    return 0


@contextlib.contextmanager
def shown_log(say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, the ``fastbp`` logger's info lines (which device ``auto`` chose, the
    plan a device runs) go to ``say``; warnings go to stderr, as without the block."""

    class Say(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno < logging.WARNING:
                say(record.getMessage())
            else:
                print(record.getMessage(), file=sys.stderr, flush=True)

    log = logging.getLogger("fastbp")
    handler, level = Say(logging.INFO), log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
