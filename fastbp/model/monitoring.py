"""Per-epoch callbacks for :meth:`Network.train`: monitoring like the book's ``network2.py``,
early stopping on validation accuracy, chapter 3's learning-rate schedule, and :func:`chain` to
run several.

A callback is ``callback(record, net)``, called after every epoch; training stops when it
returns ``False``. Their state is plain JSON (``state()`` / ``load_state()``), so a checkpoint
can carry it and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from ..core.validate import check_batch, check_count, check_labels, check_positive
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..core.records import EpochRecord
    from .trainee import Trainee

Callback = Callable[["EpochRecord", "Trainee"], "bool | None"]


class Monitoring(NamedTuple):
    """The four lists ``network2.py``'s ``SGD`` returns, one entry per epoch for each flag on."""

    evaluation_cost: list[float]
    evaluation_accuracy: list[int]
    training_cost: list[float]
    training_accuracy: list[int]


def total_cost(net: Trainee, X: Any, labels: Any, lmbda: float = 0.0) -> float:
    """``network2.py``'s ``total_cost``: the mean cost over the ``N`` columns of ``X`` plus the
    L2 term, ``C = (1/N) Σ_x C_x + (λ / 2N) Σ_l ‖W^l‖²``. ``labels`` are integers or one-hot."""

    X = check_batch(X, net.sizes[0], "X")
    n = int(X.shape[1])
    lab = check_labels(labels, net.sizes[-1], n)
    be, total, start = net.backend, 0.0, 0
    with be.activate():
        for a in net.outputs_in_chunks(X):
            a = be.to_numpy(a)
            stop = start + a.shape[1]
            y = np.zeros_like(a)
            y[lab[start:stop], np.arange(a.shape[1])] = 1.0
            total += net.cost.fn(a, y)
            start = stop
    l2 = sum(float(np.vdot(w, w)) for w in net.weights)
    return total / n + 0.5 * (lmbda / n) * l2


class Monitor:
    """Records what ``network2.py``'s monitoring flags record, after every epoch.

    ``evaluation`` and ``training`` are ``(X, labels)`` pairs (``X`` one sample per column).
    Costs include the L2 term with ``lmbda`` as in the book; accuracies are counts of correct
    samples. ``verbose`` prints the book's lines, calling the evaluation data ``evaluation_name``.
    :meth:`lists` gives the four lists.
    """

    def __init__(self, *, evaluation: tuple[Any, Any] | None = None,
                 training: tuple[Any, Any] | None = None, lmbda: float = 0.0,
                 evaluation_cost: bool = False, evaluation_accuracy: bool = False,
                 training_cost: bool = False, training_accuracy: bool = False,
                 verbose: bool = False, print_fn: Callable[[str], None] = print,
                 evaluation_name: str = "evaluation") -> None:
        if (evaluation_cost or evaluation_accuracy) and evaluation is None:
            raise ConfigError("monitoring the evaluation cost or accuracy needs evaluation data")
        if (training_cost or training_accuracy) and training is None:
            raise ConfigError("monitoring the training cost or accuracy needs the training data")
        self.evaluation, self.training = evaluation, training
        self.lmbda = check_positive("lmbda", lmbda, allow_zero=True)
        self.flags = {"evaluation_cost": evaluation_cost,
                      "evaluation_accuracy": evaluation_accuracy,
                      "training_cost": training_cost, "training_accuracy": training_accuracy}
        self.verbose, self.print_fn = verbose, print_fn
        self.names = {"training": "training", "evaluation": evaluation_name}
        self.evaluation_cost: list[float] = []
        self.evaluation_accuracy: list[int] = []
        self.training_cost: list[float] = []
        self.training_accuracy: list[int] = []

    @property
    def active(self) -> bool:
        return any(self.flags.values())

    def __call__(self, record: EpochRecord, net: Trainee) -> None:
        say = self.print_fn if self.verbose else (lambda _line: None)
        for which, data in (("training", self.training), ("evaluation", self.evaluation)):
            if self.flags[f"{which}_cost"]:
                c = total_cost(net, *data, lmbda=self.lmbda)
                getattr(self, f"{which}_cost").append(c)
                say(f"Cost on {self.names[which]} data: {c}")
            if self.flags[f"{which}_accuracy"]:
                hits = net.count_correct(*data)
                getattr(self, f"{which}_accuracy").append(hits)
                say(f"Accuracy on {self.names[which]} data: {hits} / "
                    f"{int(np.shape(data[0])[1])}")

    def lists(self) -> Monitoring:
        """``(evaluation_cost, evaluation_accuracy, training_cost, training_accuracy)``."""
        return Monitoring(list(self.evaluation_cost), list(self.evaluation_accuracy),
                          list(self.training_cost), list(self.training_accuracy))

    def state(self) -> dict[str, list]:
        return self.lists()._asdict()

    def load_state(self, state: dict[str, list]) -> None:
        for name in Monitoring._fields:
            setattr(self, name, list(state.get(name, [])))


class EarlyStopping:
    """Stop when validation accuracy has not improved for ``patience`` epochs in a row.

    With ``data=(X, labels)`` the accuracy is measured on it after every epoch (use the
    validation set, never the test set); without, the record's accuracy (``train``'s ``test``
    set) is used. Improvement means strictly more than the best by ``min_delta``.
    """

    def __init__(self, patience: int, data: tuple[Any, Any] | None = None,
                 min_delta: float = 0.0, verbose: bool = False,
                 print_fn: Callable[[str], None] = print) -> None:
        self.patience = check_count("patience", patience, low=1)
        self.data = data
        self.min_delta = check_positive("min_delta", min_delta, allow_zero=True)
        self.verbose, self.print_fn = verbose, print_fn
        self.best_accuracy: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def __call__(self, record: EpochRecord, net: Trainee) -> bool:
        if self.data is not None:
            acc = net.accuracy(*self.data)
        elif record.accuracy is not None:
            acc = record.accuracy
        else:
            raise ConfigError("early stopping needs validation data, or a test set passed to train")
        if self.best_accuracy is None or acc > self.best_accuracy + self.min_delta:
            self.best_accuracy, self.best_epoch, self.wait = acc, record.epoch, 0
            return True
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = record.epoch
            if self.verbose:
                self.print_fn(f"Early stopping: no better validation accuracy in {self.patience} "
                              f"epochs (best {100 * self.best_accuracy:.2f} % at epoch "
                              f"{self.best_epoch})")
            return False
        return True

    def state(self) -> dict[str, Any]:
        return {"best_accuracy": self.best_accuracy, "best_epoch": self.best_epoch,
                "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state(self, state: dict[str, Any]) -> None:
        for key in ("best_accuracy", "best_epoch", "wait", "stopped_epoch"):
            setattr(self, key, state.get(key, getattr(self, key)))


class LearningRateSchedule:
    """Chapter 3's schedule: halve ``η`` when the validation accuracy has not improved for
    ``patience`` epochs in a row (``η ← η/2``), and stop training when that happens the
    ``halvings``-th time (the rate would fall to ``η₀/2^halvings``).

    Pass it as ``net.train(..., schedule=LearningRateSchedule(10, 7, data=validation))``. The
    accuracy is measured on ``data=(X, labels)`` after every epoch, or taken from the record
    (``train``'s ``test`` set) without it. Improvement means strictly more than the best.
    ``etas`` lists the rate of every epoch it has seen.
    """

    def __init__(self, patience: int, halvings: int, data: tuple[Any, Any] | None = None,
                 verbose: bool = False, print_fn: Callable[[str], None] = print) -> None:
        self.patience = check_count("patience", patience, low=1)
        self.halvings = check_count("halvings", halvings, low=1)
        self.data = data
        self.verbose, self.print_fn = verbose, print_fn
        self.eta: float | None = None
        self.halved = 0
        self.best_accuracy: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.etas: list[float] = []

    def begin(self, eta: float) -> float:
        """The rate of the next epoch: ``eta`` on a fresh schedule, its own once it has run."""
        if self.eta is None:
            self.eta = check_positive("eta", eta)
        return self.eta

    def __call__(self, record: EpochRecord, net: Trainee) -> bool:
        if self.eta is None:
            raise ConfigError("the schedule has no rate yet: pass it to train(schedule=...)")
        self.etas.append(self.eta)
        acc = net.accuracy(*self.data) if self.data is not None else record.accuracy
        if acc is None:
            raise ConfigError("the schedule needs validation data, or a test set passed to train")
        if self.best_accuracy is None or acc > self.best_accuracy:
            self.best_accuracy, self.wait = acc, 0
            return True
        self.wait += 1
        if self.wait < self.patience:
            return True
        self.wait = 0
        self.halved += 1
        if self.halved >= self.halvings:
            self.stopped_epoch = record.epoch
            if self.verbose:
                self.print_fn(f"Schedule: no better validation accuracy in {self.patience} "
                              f"epochs, η halved {self.halved} times: stopping")
            return False
        self.eta = self.eta / 2
        if self.verbose:
            self.print_fn(f"Schedule: no better validation accuracy in {self.patience} epochs: "
                          f"η = {self.eta:g}")
        return True

    def unfinished(self) -> str | None:
        """What to say when training ended before the schedule stopped it (the epoch limit came
        first): how far it got, and how to let it finish; ``None`` when it finished."""
        if self.stopped_epoch is not None or self.eta is None:
            return None
        return (f"Schedule: not finished when the run ended: η was halved {self.halved} of "
                f"{self.halvings} times (η = {self.eta:g}; {self.wait} of {self.patience} epochs "
                "without a better validation accuracy); more epochs let it finish")

    def state(self) -> dict[str, Any]:
        return {"eta": self.eta, "halved": self.halved, "best_accuracy": self.best_accuracy,
                "wait": self.wait, "stopped_epoch": self.stopped_epoch, "etas": list(self.etas)}

    def load_state(self, state: dict[str, Any]) -> None:
        for key in ("eta", "halved", "best_accuracy", "wait", "stopped_epoch", "etas"):
            setattr(self, key, state.get(key, getattr(self, key)))


def chain(*callbacks: Callback | None) -> Callback:
    """One callback that runs ``callbacks`` in order; it returns ``False`` (stop) when any did.

    Every callback runs each epoch, even after one has asked to stop.
    """
    live = [c for c in callbacks if c is not None]

    def run_all(record: EpochRecord, net: Trainee) -> bool:
        results = [c(record, net) for c in live]
        return not any(r is False for r in results)

    return run_all


def sgd_network2(net: Trainee, training_data: Any, epochs: int, mini_batch_size: int,
                 eta: float, *, lmbda: float = 0.0, evaluation_data: Any = None,
                 monitor_evaluation_cost: bool = False, monitor_evaluation_accuracy: bool = False,
                 monitor_training_cost: bool = False, monitor_training_accuracy: bool = False,
                 early_stopping_n: int = 0) -> Monitoring:
    """``network2.py``'s ``SGD`` on the book's data (lists of ``(x, y)`` pairs): L2-regularised
    SGD that prints what it monitors each epoch and returns the four lists.

    Early stopping (``early_stopping_n > 0``) stops after that many epochs without a better
    evaluation accuracy, as ``network2.py`` does.
    """
    from .inputs import stack_pairs

    X, Y = stack_pairs(training_data, "training_data")
    training = (X, check_labels(Y, net.sizes[-1], X.shape[1], "training labels"))
    evaluation = None
    if evaluation_data is not None:
        evaluation = stack_pairs(evaluation_data, "evaluation_data", labels=True)
    early_stopping_n = check_count("early_stopping_n", early_stopping_n, low=0)
    if early_stopping_n and evaluation is None:
        raise ConfigError("early_stopping_n needs evaluation_data")
    monitor = Monitor(evaluation=evaluation, training=training, lmbda=lmbda,
                      evaluation_cost=monitor_evaluation_cost,
                      evaluation_accuracy=monitor_evaluation_accuracy,
                      training_cost=monitor_training_cost,
                      training_accuracy=monitor_training_accuracy, verbose=True)
    stopper = EarlyStopping(early_stopping_n, data=evaluation) if early_stopping_n else None

    def header(record: EpochRecord, net: Trainee) -> None:
        print(f"Epoch {record.epoch} training complete", flush=True)

    net.train(X, Y, epochs=epochs, batch_size=mini_batch_size, eta=eta, lmbda=lmbda,
              callback=chain(header, monitor, stopper))
    return monitor.lists()
