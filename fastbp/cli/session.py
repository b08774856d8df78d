"""What ``fastbp train`` does around the training loop: progress, monitoring, early stopping,
checkpoints, resuming and pictures (options ``--save``, ``--checkpoint-every``, ``--resume``,
``--plot``, ``--quiet``, ``--patience``, ``--monitor-*``).

A resumed run continues bit for bit: the model file holds the parameters, the random state and
the history, and its ``extra["train"]`` the options of the run, which fill in every option not
given again on the command line (checked as the command line checks them). ``--epochs`` counts
all epochs, those before the resume too. A ``.json`` save keeps what the book's format cannot hold
in a file beside it (:mod:`fastbp.cli.resume`); a stopped run keeps its last finished epoch
(:mod:`fastbp.cli.interrupts`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.validate import check_count
from ..errors import ConfigError, FastbpError, TrainingDiverged
from .interrupts import CLI_NAMES, cause, sigterm_as_interrupt, stop_line
from .layers import layer_options
from .outputs import (
    check_paths,
    checked_extra,
    save_or_rescue,
    save_somewhere,
    warn_checkpoint,
    write_model,
)

RESUMABLE = ("epochs", "batch_size", "eta", "lmbda", "momentum", "l1", "dropout", "limit",
             "expand", "schedule", "patience", "checkpoint_every")
"""Options a resumed run takes from the model file unless given again."""
MODEL_OPTIONS = ("sizes", "cost", "init", "dtype", "activation")
"""Options fixed by the model file: given again, they must match it."""
MONITORS = ("monitor_evaluation_accuracy", "monitor_evaluation_cost",
            "monitor_training_accuracy", "monitor_training_cost")


def add_keep_args(p: argparse.ArgumentParser) -> None:
    """The options of this module; call after the training options are defined."""
    g = p.add_argument_group("keep and see")
    g.add_argument("--save", metavar="PATH", default=None,
                   help="save the model as the last epoch left it to PATH (.npz, see "
                   "fastbp.io.checkpoint; a .json name writes the book's network2.py file and "
                   "NAME.fastbp.npz beside it with the rest of the run); a run stopped by "
                   "Ctrl-C, SIGTERM or a divergence saves its last finished epoch there")
    g.add_argument("--checkpoint-every", type=int, metavar="N", default=None,
                   help="also save to the --save path every N epochs")
    g.add_argument("--resume", metavar="PATH", default=None,
                   help="continue the run saved in PATH exactly where it stopped (its options "
                   "apply unless given again; --epochs counts every epoch); it saves back to "
                   "PATH unless --save names another file")
    g.add_argument("--plot", metavar="DIR", default=None,
                   help="write learning_curve.png, confusion.png and misclassified.png to DIR "
                   "(needs matplotlib: pip install 'fastbp[plot]')")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar or per-epoch lines, only the final result")
    g.add_argument("--patience", type=int, metavar="N", default=None,
                   help="stop early after N epochs without a better validation accuracy")
    for name in MONITORS:
        which, what = name.split("_")[1:]
        data = "validation" if which == "evaluation" else "training"
        g.add_argument("--" + name.replace("_", "-"), action="store_true",
                       help=f"after each epoch, print the {what} on the {data} data "
                       "(network2.py's monitoring)")
    book = {dest: p.get_default(dest) for dest in (*RESUMABLE, *MODEL_OPTIONS)}
    p.set_defaults(book_defaults=book, **{dest: None for dest in book})


class Session:
    """One ``fastbp train`` run: the network (new or resumed) and its callbacks."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..model.network import Network
        from .resume import load_run

        self.args = args
        self.rank0 = getattr(args, "rank", 0) == 0
        book = args.book_defaults
        saved: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        if args.resume is not None:
            if not args.resume:
                raise ConfigError("--resume needs a model file, got an empty string")
            self.net, extra, note, source = load_run(args.resume, args.device)
            self.extra = checked_extra(extra, source)
            if note and getattr(args, "rank", 0) == 0:  # even with --quiet: what it restores
                print(f"fastbp: {note}", flush=True)
            saved = dict(self.extra.get("train", {}))
            hidden = sorted(set(self.net.kinds[:-1])) or ["sigmoid"]
            model = {"sizes": self.net.sizes, "cost": self.net.cost.name,
                     "init": self.net.init, "dtype": self.net.dtype,
                     "activation": hidden[0] if len(hidden) == 1 else ",".join(hidden)}
            for key, value in model.items():
                given = getattr(args, key)
                if given is not None and given != value:
                    raise ConfigError(
                        f"--{key.replace('_', '-')} {given} differs from the model in "
                        f"{args.resume} ({value}); leave it out when resuming")
                setattr(args, key, value)
            for name in MONITORS:
                setattr(args, name, getattr(args, name) or bool(saved.get(name, False)))
        layers = layer_options(args)  # --net or --layers (sets their default η)
        if layers is not None and args.resume:
            raise ConfigError("--net and --layers build a new network; --resume continues the "
                              "one in its file: leave them out")
        for key in RESUMABLE:
            if getattr(args, key) is None:
                setattr(args, key, saved.get(key, book.get(key)))
        if args.schedule is not None:  # a JSON list in the model file
            args.schedule = tuple(args.schedule)
        if layers is not None:
            args.dtype = args.dtype or book["dtype"]
            self.net = Network(layers, device=args.device, dtype=args.dtype, seed=args.seed)
        elif not args.resume:
            for key in MODEL_OPTIONS:
                if getattr(args, key) is None:
                    setattr(args, key, book[key])
            self.net = Network(args.sizes, cost=args.cost, device=args.device, dtype=args.dtype,
                               seed=args.seed, init=args.init, activation=args.activation)
        check_count("epochs", args.epochs, low=0)
        self.save_path = args.save or args.resume
        if args.checkpoint_every is not None and not self.save_path:
            raise ConfigError("--checkpoint-every needs --save PATH (where to keep the model)")
        if args.checkpoint_every is not None and args.checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
        if args.patience is not None and args.patience < 1:
            raise ConfigError(f"--patience must be >= 1, got {args.patience}")
        check_paths(args, self.net, self.save_path)  # all before the first epoch
        if args.plot:
            from ..io.plots import _figure

            _figure((1, 1))  # fails now, with the pip command, not after training
        self.stopped_before = self.extra.get("early_stopping", {}).get("stopped_epoch")

    # -- what happens each epoch --------------------------------------------------------------
    def say(self, line: str) -> None:
        if not self.args.quiet:
            print(line, flush=True)

    @property
    def epochs_left(self) -> int:
        if self.stopped_before is not None:
            return 0
        return max(0, self.args.epochs - len(self.net.history))

    def train_options(self, data: Any, X: Any, labels: Any) -> dict[str, Any]:
        """``callback`` (and ``progress``) for ``net.train``."""
        from ..model.monitoring import EarlyStopping, Monitor, chain
        from ..model.progress import reporter

        args = self.args
        validation = (data.validation.X, data.validation.labels)
        show = reporter(quiet=args.quiet, epochs=args.epochs, first_epoch=len(self.net.history),
                        n_test=len(data.test), bar=not args.distributed)
        self.reporter = show
        self.monitor = Monitor(
            evaluation=validation, training=(X, labels), lmbda=args.lmbda, verbose=not args.quiet,
            evaluation_name="validation",
            **{name[len("monitor_"):]: getattr(args, name) for name in MONITORS})
        self.monitor.load_state(self.extra.get("monitor", {}))
        self.stopper = None
        if args.patience:
            self.stopper = EarlyStopping(args.patience, data=validation, verbose=not args.quiet)
            self.stopper.load_state(self.extra.get("early_stopping", {}))
        options: dict[str, Any] = {"callback": chain(
            self._note, show, self.monitor if self.monitor.active else None, self.stopper,
            self._checkpoint)}
        self.schedule = None
        if args.schedule:  # every rank scores the same parameters, so all halve η together
            from ..model.monitoring import LearningRateSchedule

            self.schedule = LearningRateSchedule(*args.schedule, data=validation,
                                                 verbose=not args.quiet)
            self.schedule.load_state(self.extra.get("schedule", {}))
            options["schedule"] = self.schedule
        if show is not None and show.hook is not None and not args.distributed:
            options["progress"] = show.hook
        return options

    def _note(self, record: Any, net: Any) -> None:
        """Keep ``net.history`` complete when the loop that ran did not extend it."""
        if not (net.history and net.history[-1] is record):
            net.history.append(record)

    def _checkpoint(self, record: Any, net: Any) -> None:
        every = self.args.checkpoint_every
        if every and (record.epoch + 1) % every == 0:
            try:
                self.save(final=False)
            except (OSError, FastbpError) as exc:
                warn_checkpoint(self.save_path, exc)

    def config(self) -> dict[str, Any]:
        args = self.args
        out = {key: getattr(args, key) for key in RESUMABLE}
        out.update({name: bool(getattr(args, name)) for name in MONITORS})
        out["seed"] = args.seed if not args.resume else self.extra.get("train", {}).get("seed")
        return out

    def extra_state(self) -> dict[str, Any]:
        """What the model file keeps besides the network: the options and callbacks' state."""
        extra = {"train": self.config(), "monitor": self.monitor.state()}
        if self.stopper is not None:
            extra["early_stopping"] = self.stopper.state()
        if getattr(self, "schedule", None) is not None:
            extra["schedule"] = self.schedule.state()
        return extra

    def save(self, final: bool = True) -> None:
        """Save to the run's path; at the end (``final``) a failure keeps the network in a
        rescue folder and exits 1 (:func:`fastbp.cli.outputs.save_or_rescue`)."""
        if not (self.save_path and self.rank0):
            return
        if final:
            save_or_rescue(self.net, self.save_path, self.extra_state())
        else:
            write_model(self.net, self.save_path, self.extra_state())

    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        """Around the training: SIGTERM stops it as Ctrl-C does, and a run stopped by either,
        by a divergence or by any error, after at least one finished epoch saves the last
        finished epoch where ``--save`` asked (else in a rescue file) and says where; the
        exception goes on (exit 130, 143, 2...). A divergence's message names the command
        line's options."""
        start = len(self.net.history)
        try:
            with sigterm_as_interrupt():
                yield
        except (KeyboardInterrupt, Exception) as exc:
            if getattr(self, "reporter", None) is not None:
                self.reporter.close()  # a terminal's bar ends its line before the messages
            line = None
            if self.rank0 and len(self.net.history) > start:
                where, failure = None, None
                if self.save_path:
                    where, failure = save_somewhere(self.net, self.save_path,
                                                    self.extra_state())
                line = stop_line(len(self.net.history), where, failure, self.save_path)
            if isinstance(exc, TrainingDiverged):
                message = exc.message_for(CLI_NAMES) if hasattr(exc, "message_for") \
                    else str(exc)
                err = TrainingDiverged(message + (f" {line[0].upper()}{line[1:]}." if line else ""))
                err.__dict__.update({k: v for k, v in exc.__dict__.items() if k != "args"})
                raise err from None
            if line:
                print(f"fastbp: {cause(exc)}: {line}", file=sys.stderr, flush=True)
            raise

    # -- after training ----------------------------------------------------------------------------
    def finish(self, data: Any) -> None:
        if getattr(self, "reporter", None) is not None:
            self.reporter.close()
        history = self.net.history
        if self.save_path and self.rank0:
            self.save()
            self.say(f"saved {self.save_path} ({len(history)} epochs)")
        if self.args.plot and self.rank0:
            from ..io.plots import evaluation_pictures, learning_curves
            from ..model.evaluation import evaluate

            paths = []
            if len(history):
                paths.append(learning_curves(history, Path(self.args.plot) / "learning_curve.png",
                                             costs=self.net.cost.name))
            result = evaluate(self.net, data.test.X, data.test.labels)
            paths += evaluation_pictures(data.test.X, result, self.args.plot)
            self.say("pictures: " + ", ".join(str(p) for p in paths))
        if self.stopped_before is not None:
            print(f"the saved run had stopped early at epoch {self.stopped_before}; "
                  "nothing left to train", flush=True)
        line = self.final_line()
        if line:
            print(line, flush=True)

    def final_line(self) -> str | None:
        """The best epoch's test accuracy and, when they differ, the last epoch's, which is
        the one ``--save`` keeps."""
        scored = [r for r in self.net.history if r.accuracy is not None]
        if not scored:
            return None
        best = max(scored, key=lambda r: r.accuracy)  # the first of equals
        last = scored[-1]
        kept = f"saved in {self.save_path}" if self.save_path and self.rank0 else ""
        line = f"best test accuracy {100 * best.accuracy:.2f} % (epoch {best.epoch}"
        if best is last:
            return line + (f", the last, {kept})" if kept else ", the last)")
        return (line + f"); the last epoch, {last.epoch}, has {100 * last.accuracy:.2f} %"
                + (f" and is the one {kept}" if kept else ""))

