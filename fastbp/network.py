"""``Network``: a stack of sigmoid layers trained by mini-batch SGD with backprop in matrix form.

``z^l = W^l a^{l-1} + b^l``, ``a^l = σ(z^l)``. The book's API (``SGD``, ``update_mini_batch``,
``backprop``, ``feedforward``, ``evaluate``, ``cost_derivative``) takes the book's data, a list of
``(x, y)`` column pairs; ``train`` is the fast path for arrays. Both run the same equations
(:mod:`fastbp.equations`) on the network's backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

from . import devices
from .backend import Array, Backend
from .costs import QuadraticCost, get_cost
from .equations import backpropagate, bp3, bp4, feedforward
from .errors import ConfigError, ShapeError
from .guard import DivergenceGuard
from .memory import translate_oom
from .progress import sgd_epoch_in_chunks
from .training import EpochPlan, Evaluator, Workspace
from .validate import (
    check_batch,
    check_callable,
    check_count,
    check_finite,
    check_flag,
    check_labels,
    check_positive,
    check_seed,
    check_sizes,
    check_targets,
)

INITS = ("standard", "scaled")
MOVE_LESS = "train on fewer samples per call (slices of X), or use a device with more memory"


@dataclass
class EpochRecord:
    """One epoch: mean cost per sample over its mini-batches, test accuracy (with a test set),
    wall seconds including evaluation, and training samples/s (the SGD steps alone)."""

    epoch: int
    cost: float
    accuracy: float | None
    correct: int | None
    seconds: float
    samples_per_s: float


class History(list):
    """The per-epoch records ``train`` returns (a list of :class:`EpochRecord`)."""

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self]

    @property
    def best_accuracy(self) -> float | None:
        accs = [r.accuracy for r in self if r.accuracy is not None]
        return max(accs) if accs else None


class ParameterList(Sequence):
    """``net.weights`` / ``net.biases``: read as NumPy copies; assign arrays of the right shape."""

    def __init__(self, net: Network, arrays: list[Array], what: str) -> None:
        self._net, self._arrays, self._what = net, arrays, what

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._read(a) for a in self._arrays[i]]
        return self._read(self._arrays[i])

    def _read(self, a: Array) -> np.ndarray:
        """A host copy, never a view of the live parameter (training must not change it)."""
        out = self._net.backend.to_numpy(a)
        return out.copy() if isinstance(a, np.ndarray) else out

    def __setitem__(self, i: int, value: Any) -> None:
        self._net.backend.copy_into(self._arrays[i], self._check(i, value))

    def _check(self, i: int, value: Any) -> Any:
        """``value`` as an array fit for ``self[i]``: its shape, finite entries, else ShapeError."""
        target = self._arrays[i]
        value = self._net.backend.check_device(value, f"{self._what}[{i}]")
        value = np.asarray(value) if not self._net.backend.is_native(value) else value
        layer = i % len(self._arrays) + 2
        if tuple(value.shape) != tuple(target.shape):
            raise ShapeError(
                f"{self._what}[{i}] (layer {layer}) must have shape {tuple(target.shape)}, "
                f"got {tuple(value.shape)}"
            )
        return check_finite(value, f"{self._what}[{i}] (layer {layer})")

    def __repr__(self) -> str:
        return f"{self._what}{[tuple(a.shape) for a in self._arrays]}"


class Network:
    """A fully connected sigmoid network; ``sizes[0]`` inputs, ``sizes[-1]`` outputs.

    ``weights[l]`` is ``W^{l+2}`` with shape ``(sizes[l+1], sizes[l])``, ``biases[l]`` is
    ``b^{l+2}`` with shape ``(sizes[l+1], 1)`` (layer 1 is the input, as in the book).
    ``init="standard"`` draws both from N(0, 1); ``init="scaled"`` divides the weights by
    ``sqrt(n_in)`` (the book's chapter 3).

    Threads: different networks may train, and be read, in different threads at once; NumPy's
    BLAS releases the GIL, so they run in parallel. A device string gives each network its own
    backend; share one backend instance (``device=backend``) between threads only on ``cpu``, as
    a plugin may keep work buffers on the instance. One network is not thread-safe: never train
    it from two threads at once, and do not call its ``feedforward``/``predict``/``backprop``
    from another thread while it trains (they share its work buffers); read its parameters from
    the training thread (e.g. in ``callback``), since a read from elsewhere may mix two steps.
    ``use_device`` is per thread (a ``ContextVar``): a block in one thread never changes the
    device another thread gets.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        cost: Any = QuadraticCost,
        device: str | Backend | None = None,
        dtype: str = "float32",
        seed: int | None = None,
        init: str = "standard",
    ) -> None:
        self.sizes = check_sizes(sizes)
        self.num_layers = len(self.sizes)
        self.cost = get_cost(cost)
        if init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        self.backend = devices.resolve(device, dtype)
        self.rng = check_seed(seed)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        n_params = sum(n * (k + 1) for k, n in pairs)  # drawn in float64, then moved
        with translate_oom(self.backend, self.sizes, 1, what=f"the {n_params:,} parameters",
                           asked=n_params * (8 + np.dtype(self.backend.dtype).itemsize),
                           advice="use fewer or smaller layers, or a device with more memory"):
            biases = [self.rng.standard_normal((n, 1)) for _, n in pairs]
            scale = (lambda k: 1.0 / np.sqrt(k)) if init == "scaled" else (lambda k: 1.0)
            weights = [self.rng.standard_normal((n, k)) * scale(k) for k, n in pairs]
            with self.backend.activate():
                self._biases = [self.backend.asarray(b) for b in biases]
                self._weights = [self.backend.asarray(w) for w in weights]
        self._workspaces: dict[int, Workspace] = {}
        self.history = History()  # every epoch this network has trained, kept by save/load

    # -- parameters ---------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def dtype(self) -> str:
        return self.backend.dtype

    @property
    def weights(self) -> ParameterList:
        return ParameterList(self, self._weights, "weights")

    @weights.setter
    def weights(self, values: Iterable[Any]) -> None:
        self._assign(self.weights, values)

    @property
    def biases(self) -> ParameterList:
        return ParameterList(self, self._biases, "biases")

    @biases.setter
    def biases(self, values: Iterable[Any]) -> None:
        self._assign(self.biases, values)

    @staticmethod
    def _assign(target: ParameterList, values: Iterable[Any]) -> None:
        try:
            values = list(values)
        except TypeError as exc:
            raise ShapeError(f"{target._what} must be a list of arrays, got "
                             f"{type(values).__name__}") from exc
        if len(values) != len(target):
            raise ShapeError(f"expected {len(target)} arrays for {target._what}, got {len(values)}")
        checked = [target._check(i, v) for i, v in enumerate(values)]  # all or nothing
        for i, v in enumerate(checked):
            target._net.backend.copy_into(target._arrays[i], v)

    def __repr__(self) -> str:
        return (f"Network({self.sizes}, cost={self.cost.__name__}, device={self.device!r}, "
                f"dtype={self.dtype!r})")

    def to(self, device: str | Backend) -> Network:
        """This network on another device, with identical parameters and random state."""
        other = Network.__new__(Network)
        other.__dict__.update(self.__dict__)
        other.backend = devices.resolve(device, self.dtype)
        other.rng = np.random.default_rng()
        other.rng.bit_generator.state = self.rng.bit_generator.state
        with other.backend.activate():
            other._weights = [other.backend.asarray(w) for w in self.weights]
            other._biases = [other.backend.asarray(b) for b in self.biases]
        other._workspaces = {}
        other.history = History(self.history)
        return other

    def save(self, path: Any, *, extra: dict[str, Any] | None = None) -> Any:
        """Write parameters, random state and history to ``path`` atomically; read it back
        with :func:`fastbp.load`. The format is in :mod:`fastbp.checkpoint`."""
        from .checkpoint import save

        return save(self, path, extra=extra)

    # -- the matrix form ----------------------------------------------------------------
    def _input(self, x: Any, name: str = "X") -> Array:
        """A batch on this network's device: host data moved once, other devices refused."""
        x = check_batch(self.backend.check_device(x, name), self.sizes[0], name)
        return self.backend.asarray(x)

    def _workspace(self, m: int) -> Workspace:
        ws = self._workspaces.get(m)
        if ws is None:
            ws = self._workspaces[m] = Workspace(self.backend, self.sizes, m)
        return ws

    def feedforward(self, a: Any) -> np.ndarray:
        """``a^L`` for a batch ``a`` of shape ``(sizes[0], m)``; ``(sizes[0], 1)`` is one sample."""
        with self.backend.activate():
            x = self._input(a, "a")
            ws = self._workspace(int(x.shape[1]))
            out = feedforward(self.backend, self._weights, self._biases, x, ws.activations)
            return self.backend.to_numpy(out).copy()

    def backprop(self, x: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(nabla_b, nabla_w)``: ``∂C/∂b^l`` and ``∂C/∂W^l`` summed over the ``m`` columns.

        BP1 and BP2 give every ``δ^l``; BP3 and BP4 turn them into the gradient.
        """
        be = self.backend
        with be.activate():
            x = self._input(x, "x")
            m = int(x.shape[1])
            y = be.asarray(check_targets(be.check_device(y, "y"), self.sizes[-1], m, "y"))
            ws = self._workspace(m)
            feedforward(be, self._weights, self._biases, x, ws.activations)
            backpropagate(be, self.cost, self._weights, x, y, ws.activations, ws.deltas,
                          ws.scratch)
            inputs = [x, *ws.activations[:-1]]
            nabla_b = [be.to_numpy(bp3(be, d, out=be.empty((d.shape[0], 1)))) for d in ws.deltas]
            nabla_w = [be.to_numpy(bp4(be, d, a, out=be.empty(w.shape)))
                       for d, a, w in zip(ws.deltas, inputs, self._weights)]
        return nabla_b, nabla_w

    def cost_derivative(self, output_activations: Any, y: Any) -> Any:
        """``∇_a C_x = a^L − y`` for the quadratic cost (the book's helper)."""
        return output_activations - y

    def total_cost(self, x: Any, y: Any) -> float:
        """``C`` summed over the columns of ``x`` (one-hot ``y``), as the cost defines it."""
        a = self.feedforward(x)
        y = self.backend.check_device(y, "y", host=True)
        return self.cost.fn(a, check_targets(y, self.sizes[-1], a.shape[1]))

    def predict(self, x: Any) -> np.ndarray:
        """The class of each column of ``x``: ``argmax_j a^L_j``."""
        return self.feedforward(x).argmax(axis=0)

    # -- the fast path --------------------------------------------------------------------
    def train(
        self,
        X: Any,
        Y: Any,
        *,
        epochs: int,
        batch_size: int,
        eta: float,
        test: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        lmbda: float = 0.0,
        callback: Callable[[EpochRecord, Network], bool | None] | None = None,
        verbose: bool = False,
        progress: Callable[[int, float, int], None] | None = None,
        on_diverge: str = "raise",
    ) -> History:
        """Mini-batch SGD on arrays: ``X`` is ``(sizes[0], N)``, ``Y`` one-hot ``(sizes[-1], N)``
        or ``N`` integer labels; ``test`` is ``(X_test, labels)``.

        The data move to the device once; each mini-batch is gathered there. ``lmbda`` is the L2
        weight of the book's chapter 3 (``W ← (1 − ηλ/n) W − (η/m) ∂C/∂W``). ``callback(record,
        net)`` runs after every epoch and stops training when it returns ``False``.
        ``progress(done, cost_sum, n)`` runs after each of a few slices of every epoch (see
        :mod:`fastbp.progress`). Epochs are numbered from ``len(self.history)``, which every
        epoch extends. Returns the per-epoch :class:`History` of this call.

        After each epoch the cost and the parameters are checked once (:mod:`fastbp.guard`): on
        NaN or inf the network gets back its last finite parameters and ``TrainingDiverged``
        names the epoch and layer; ``on_diverge="continue"`` warns and goes on instead.
        """
        epochs = check_count("epochs", epochs, low=0)
        eta = check_positive("eta", eta)
        lmbda = check_positive("lmbda", lmbda, allow_zero=True)
        shuffle, verbose = check_flag("shuffle", shuffle), check_flag("verbose", verbose)
        check_callable("callback", callback), check_callable("progress", progress)
        be = self.backend
        with be.activate():
            guard = DivergenceGuard(be, self._weights, self._biases, on_diverge=on_diverge,
                                    eta=eta, first_epoch=len(self.history))
            plan, evaluator = self._plan(X, Y, batch_size, eta, lmbda, test)
            history = History()
            n = int(plan.xs.shape[0])
            for epoch in range(len(self.history), len(self.history) + epochs):
                order = self.rng.permutation(n) if shuffle else np.arange(n)
                plan.order = be.index_array(order)
                t0 = time.perf_counter()
                if progress is None:  # reading the cost waits for the device
                    cost = float(be.sgd_epoch(plan)) / n
                else:
                    cost = sgd_epoch_in_chunks(be, plan, order, progress) / n
                t1 = time.perf_counter()
                guard.check(epoch, cost)
                correct = evaluator.correct(self._weights, self._biases) if evaluator else None
                record = EpochRecord(
                    epoch=epoch, cost=cost,
                    accuracy=None if correct is None else correct / evaluator.n,
                    correct=correct, seconds=time.perf_counter() - t0,
                    samples_per_s=n / max(t1 - t0, 1e-9),
                )
                history.append(record)
                self.history.append(record)
                if verbose:
                    print(format_record(record, evaluator.n if evaluator else None), flush=True)
                if callback is not None and callback(record, self) is False:
                    break
        return history

    def _plan(self, X: Any, Y: Any, batch_size: int, eta: float, lmbda: float,
              test: tuple[Any, Any] | None) -> tuple[EpochPlan, Evaluator | None]:
        """Validate and move the training (and test) data to the device, sample-major."""
        be = self.backend
        X = check_batch(be.check_device(X, "X"), self.sizes[0], "X")
        n = int(X.shape[1])
        batch_size = check_count("batch_size", batch_size, low=1, high=n)
        itemsize, sizes = np.dtype(be.dtype).itemsize, self.sizes
        with translate_oom(be, sizes, batch_size, what=f"the training set ({n:,} samples)",
                           asked=n * (sizes[0] + sizes[-1]) * itemsize, advice=MOVE_LESS):
            xs = self._samples_major(X)
            ys = self._targets_major(Y, n)
        evaluator = None
        if test is not None:
            if not (isinstance(test, (tuple, list)) and len(test) == 2):
                raise ConfigError("test must be a pair (X_test, labels)")
            xt = check_batch(be.check_device(test[0], "test X"), self.sizes[0], "test X")
            labels = check_labels(be.check_device(test[1], "test labels", host=True),
                                  self.sizes[-1], int(xt.shape[1]), "test labels")
            n_test = int(xt.shape[1])
            with translate_oom(be, sizes, batch_size, what=f"the test set ({n_test:,} samples)",
                               asked=n_test * sizes[0] * itemsize, advice=MOVE_LESS):
                evaluator = Evaluator(be, sizes, self._samples_major(xt), be.index_array(labels))
        plan = EpochPlan(self.sizes, self._weights, self._biases, self.cost, xs, ys,
                         order=None, batch_size=batch_size, eta=eta,
                         decay=1.0 - eta * lmbda / n, workspaces=self._workspaces)
        return plan, evaluator

    def _samples_major(self, X: Any) -> Array:
        """``X`` ``(n_in, N)`` as a C-contiguous ``(N, n_in)`` device array (one copy)."""
        if self.backend.is_native(X):
            return self.backend.xp.ascontiguousarray(self.backend.asarray(X.T))
        return self.backend.asarray(np.ascontiguousarray(np.asarray(X).T))

    def _targets_major(self, Y: Any, n: int) -> Array:
        """One-hot targets ``(N, n_out)`` from one-hot ``(n_out, N)`` or ``N`` integer labels."""
        n_out = self.sizes[-1]
        Y = self.backend.check_device(Y, "Y")
        shape = tuple(getattr(Y, "shape", np.shape(Y)))
        if shape == (n_out, n):
            return self._samples_major(check_targets(Y, n_out, n))
        labels = check_labels(self.backend.check_device(Y, "Y", host=True), n_out, n, "Y")
        onehot = np.zeros((n, n_out))
        onehot[np.arange(n), labels] = 1.0
        return self.backend.asarray(onehot)

    def accuracy(self, X: Any, labels: Any) -> float:
        """The fraction of columns of ``X`` classified as ``labels``."""
        return self.count_correct(X, labels) / int(np.shape(X)[1])

    def count_correct(self, X: Any, labels: Any) -> int:
        """How many columns of ``X`` the network classifies as ``labels``."""
        be = self.backend
        with be.activate():
            X = check_batch(be.check_device(X, "X"), self.sizes[0], "X")
            lab = check_labels(be.check_device(labels, "labels", host=True), self.sizes[-1],
                               int(X.shape[1]))
            ev = Evaluator(be, self.sizes, self._samples_major(X), be.index_array(lab))
            return ev.correct(self._weights, self._biases)

    # -- the book's API ---------------------------------------------------------------------
    def SGD(self, training_data: Iterable[tuple[Any, Any]], epochs: int, mini_batch_size: int,
            eta: float, test_data: Iterable[tuple[Any, Any]] | None = None, *,
            lmbda: float | None = None, evaluation_data: Any = None,
            monitor_evaluation_cost: bool = False, monitor_evaluation_accuracy: bool = False,
            monitor_training_cost: bool = False, monitor_training_accuracy: bool = False,
            early_stopping_n: int = 0) -> Any:
        """The book's ``SGD``: lists of ``(x, y)`` column pairs, one line printed per epoch.

        With any of ``network2.py``'s keywords (``lmbda``, ``evaluation_data``, ``monitor_*``,
        ``early_stopping_n``) it is that chapter's ``SGD`` and returns its four lists
        ``(evaluation_cost, evaluation_accuracy, training_cost, training_accuracy)``; see
        :func:`fastbp.monitoring.sgd_network2`.
        """
        chapter3 = dict(evaluation_data=evaluation_data,
                        monitor_evaluation_cost=monitor_evaluation_cost,
                        monitor_evaluation_accuracy=monitor_evaluation_accuracy,
                        monitor_training_cost=monitor_training_cost,
                        monitor_training_accuracy=monitor_training_accuracy,
                        early_stopping_n=early_stopping_n)
        flags = [v for k, v in chapter3.items() if k != "evaluation_data"]
        if lmbda is not None or evaluation_data is not None or any(flags):
            from .monitoring import sgd_network2

            if test_data is not None:
                raise ConfigError("test_data belongs to chapter 1's SGD; with network2.py's "
                                  "keywords pass evaluation_data=... instead")
            return sgd_network2(self, training_data, epochs, mini_batch_size, eta,
                                lmbda=0.0 if lmbda is None else lmbda, **chapter3)
        X, Y = stack_pairs(training_data, "training_data")
        test = None
        if test_data is not None:
            test = stack_pairs(test_data, "test_data", labels=True)
        n_test = test[0].shape[1] if test is not None else 0

        def report(record: EpochRecord, net: Network) -> None:
            if record.correct is not None:
                print(f"Epoch {record.epoch}: {record.correct} / {n_test}", flush=True)
            else:
                print(f"Epoch {record.epoch} complete", flush=True)

        return self.train(X, Y, epochs=epochs, batch_size=mini_batch_size, eta=eta, test=test,
                          callback=report)

    def update_mini_batch(self, mini_batch: Iterable[tuple[Any, Any]], eta: float) -> None:
        """One SGD step on a list of ``(x, y)`` pairs: ``W ← W − (η/m) Σ_x ∂C_x/∂W``, same for b."""
        eta = check_positive("eta", eta)
        X, Y = stack_pairs(mini_batch, "mini_batch")
        nabla_b, nabla_w = self.backprop(X, Y)
        alpha = eta / X.shape[1]
        self.weights = [w - alpha * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - alpha * nb for b, nb in zip(self.biases, nabla_b)]

    def evaluate(self, test_data: Iterable[tuple[Any, Any]]) -> int:
        """How many ``(x, label)`` pairs the network gets right (the book's ``evaluate``)."""
        X, labels = stack_pairs(test_data, "test_data", labels=True)
        return self.count_correct(X, labels)


def stack_pairs(pairs: Iterable[tuple[Any, Any]], name: str,
                labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The book's list of ``(x, y)`` column pairs as matrices ``X (n_in, N)`` and ``Y``.

    With ``labels=True`` each ``y`` is an integer label and ``Y`` is ``(N,)``.
    """
    try:
        pairs = list(pairs)
    except TypeError as exc:
        raise ShapeError(f"{name} must be a list of (x, y) pairs, got {type(pairs).__name__}") \
            from exc
    if not pairs:
        raise ShapeError(f"{name} is empty")
    try:
        xs, ys = zip(*pairs)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be a list of (x, y) pairs") from exc
    try:
        X = np.hstack([np.asarray(x).reshape(-1, 1) for x in xs])
        Y = (np.asarray([np.asarray(y).reshape(-1)[0] if np.size(y) == 1 else  # checked later
                         int(np.argmax(y)) for y in ys]) if labels
             else np.hstack([np.asarray(y).reshape(-1, 1) for y in ys]))
    except ValueError as exc:
        raise ShapeError(f"the pairs of {name} do not all have the same shapes: {exc}") from exc
    return X, Y


def format_record(record: EpochRecord, n_test: int | None = None) -> str:
    """One line per epoch: test accuracy, cost, seconds, samples/s."""
    acc = (f"test {record.correct} / {n_test} ({100 * record.accuracy:.2f} %)"
           if record.accuracy is not None else "no test set")
    return (f"Epoch {record.epoch}: {acc}, cost {record.cost:.4f}, "
            f"{record.seconds:.2f} s, {record.samples_per_s:,.0f} samples/s")
