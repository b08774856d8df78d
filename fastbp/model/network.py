"""``Network``: a stack of fully connected layers (sigmoid, tanh or relu neurons; a sigmoid or
softmax output) trained by mini-batch SGD with backprop in matrix form.

``z^l = W^l a^{l-1} + b^l``, ``a^l = f_l(z^l)`` with ``f_l`` layer ``l``'s neuron from the
table :mod:`fastbp.core.neurons` (``net.kinds``; σ throughout by default, as in the book). The
book's API (``SGD``, ``update_mini_batch``, ``backprop``, ``feedforward``, ``evaluate``,
``cost_derivative``) takes the book's data, a list of ``(x, y)`` column pairs; ``train`` is the
fast path for arrays. Both run the same equations (:mod:`fastbp.core.equations`) on the
network's backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .. import devices
from ..core.config import TrainConfig
from ..core.costs import QuadraticCost, get_cost, output_of
from ..core.equations import backpropagate, bp3, bp4, feedforward
from ..core.evaluator import Evaluator
from ..core.init import INITS, draw_parameters
from ..core.memory import translate_oom
from ..core.neurons import layer_kinds
from ..core.ops import Array
from ..core.plan import Cache, EpochPlan, Layers, Parameters, Workspace
from ..core.records import EpochRecord, History
from ..core.validate import (
    cast_checked,
    check_batch,
    check_callable,
    check_labels,
    check_seed,
    check_sizes,
    check_step,
    check_targets,
)
from ..devices.backend import Backend
from ..errors import ConfigError
from ..io import checkpoint, network2
from ..io.checkpoint import ModelState
from . import driver, inputs
from .book import BookAPI
from .layernet import LayerMethods, is_layer_stack
from .parameters import ParameterList


class Network(BookAPI):
    """A fully connected sigmoid network; ``sizes[0]`` inputs, ``sizes[-1]`` outputs.

    (Why a class of this size: it is the public face, one short method per entry point, each
    validating its arguments and moving data to the device; the book's API lives in
    :mod:`.book`, data moves in :mod:`.inputs`, the epochs in :mod:`.driver`.)

    ``weights[l]`` is ``W^{l+2}`` with shape ``(sizes[l+1], sizes[l])``, ``biases[l]`` is
    ``b^{l+2}`` with shape ``(sizes[l+1], 1)`` (layer 1 is the input, as in the book).
    ``activation`` is the hidden layers' neuron, ``sigmoid`` (the book's), ``tanh`` or ``relu``,
    one name or one per hidden layer; the output layer follows the cost: softmax for the
    log-likelihood cost, sigmoid otherwise (``net.kinds`` lists every layer's).
    ``init="standard"`` draws both from N(0, 1); ``init="scaled"`` draws ``W`` from
    N(0, g²/n_in), ``g = 1`` (the book's chapter 3) or ``√2`` for relu layers (He et al.).
    Without ``init``, the cross-entropy and log-likelihood costs and every network with tanh or
    relu neurons get the scaled weights (the book's ``network2.py``), the quadratic cost on
    sigmoid neurons the standard ones (``network.py``).

    Threads: different networks may train, and be read, in different threads at once; NumPy's
    BLAS releases the GIL, so they run in parallel. A device string gives each network its own
    backend; share one backend instance (``device=backend``) between threads only on ``cpu``, as
    a plugin may keep work buffers on the instance. One network is not thread-safe: never train
    it from two threads at once, and do not call its ``feedforward``/``predict``/``backprop``
    from another thread while it trains (they share its work buffers); read its parameters from
    the training thread (e.g. in ``callback``), since a read from elsewhere may mix two steps.
    ``use_device`` is per thread (a ``ContextVar``): a block in one thread never changes the
    device another thread gets.

    ``Network(layers, device=..., dtype=..., seed=...)`` with a list of :mod:`fastbp.layers`
    objects in place of ``sizes`` builds a :class:`LayerNetwork` (chapter 6's conv-pool layers).
    """

    def __new__(cls, sizes: Any = None, *args: Any, **kwargs: Any) -> Network:
        """``Network(layers, ...)`` (a list of :mod:`fastbp.layers` objects) is a
        :class:`LayerNetwork`; ``Network(sizes, ...)`` this class."""
        if cls is Network and is_layer_stack(sizes):
            cls = LayerNetwork
        return super().__new__(cls)

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        cost: Any = QuadraticCost,
        device: str | Backend | None = None,
        dtype: str = "float32",
        seed: int | None = None,
        init: str | None = None,
        activation: Any = "sigmoid",
    ) -> None:
        self.sizes = check_sizes(sizes)
        self.num_layers = len(self.sizes)
        self.cost = get_cost(cost)
        self.kinds = layer_kinds(self.num_layers - 1, activation, output_of(self.cost))
        if init is None:  # network2.py: cross-entropy with scaled weights; network.py: standard
            book2 = getattr(self.cost, "name", "") in ("cross-entropy", "log-likelihood")
            init = "scaled" if book2 or set(self.kinds) != {"sigmoid"} else "standard"
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
            weights, biases = draw_parameters(self.rng, self.sizes, self.kinds, init)
            with self.backend.activate():
                self._biases = [self.backend.asarray(b) for b in biases]
                self._weights = [self.backend.asarray(w) for w in weights]
        self._cache = Cache()  # work buffers and device caches, shared by the plans
        self._velocities: list[Array] | None = None  # momentum's v (W's, then b's), when used
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
        self.weights.assign(values)

    @property
    def biases(self) -> ParameterList:
        return ParameterList(self, self._biases, "biases")

    @biases.setter
    def biases(self, values: Iterable[Any]) -> None:
        self.biases.assign(values)

    def parameters(self) -> list[Array]:
        """The live device arrays ``W^2 … W^L, b^2 … b^L``, for device code (distributed
        training): write them in place, never replace them; ``weights``/``biases`` are the API."""
        return [*self._weights, *self._biases]

    def __repr__(self) -> str:
        hidden = "" if set(self.kinds[:-1]) <= {"sigmoid"} else \
            f", activation={list(self.kinds[:-1])!r}"
        return (f"Network({self.sizes}, cost={self.cost.__name__}{hidden}, "
                f"device={self.device!r}, dtype={self.dtype!r})")

    def to(self, device: str | Backend) -> Network:
        """This network on another device, with identical parameters and random state."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.backend = devices.resolve(device, self.dtype)
        other.rng = np.random.default_rng()
        other.rng.bit_generator.state = self.rng.bit_generator.state
        with other.backend.activate():
            # np.array: writable copies (a read of a parameter is read-only)
            other._weights = [other.backend.asarray(np.array(w)) for w in self.weights]
            other._biases = [other.backend.asarray(np.array(b)) for b in self.biases]
            velocities = self.velocities  # read-only host copies, or None
            other._velocities = None if velocities is None else [
                other.backend.asarray(np.array(v)) for v in velocities]
        other._cache = Cache()
        other.history = History(self.history)
        return other

    def save(self, path: Any, *, extra: dict[str, Any] | None = None,
             format: str = "fastbp") -> Any:
        """Write parameters, random state and history to ``path`` atomically; read it back
        with :func:`fastbp.load`. The format is in :mod:`fastbp.io.checkpoint`;
        ``format="network2"`` writes the book's JSON instead (:mod:`fastbp.io.network2`)."""
        if format not in ("fastbp", network2.FORMAT):
            raise ConfigError(f"format must be 'fastbp' or 'network2', got {format!r}")
        save = network2.save if format == network2.FORMAT else checkpoint.save
        return save(self.state(extra), path)

    def state(self, extra: dict[str, Any] | None = None) -> ModelState:
        """This network as plain state: host copies of ``W^l`` and ``b^l``, its generator and
        history, and ``extra`` (JSON) for the file."""
        return ModelState(sizes=list(self.sizes), cost=self.cost.name, dtype=self.dtype,
                          init=self.init, kinds=list(self.kinds), weights=list(self.weights),
                          biases=list(self.biases),
                          rng=self.rng, history=History(self.history), extra=extra or {},
                          velocities=None if self._velocities is None else list(self.velocities))

    @property
    def velocities(self) -> ParameterList | None:
        """The momentum velocities ``v`` (every ``W^l``'s, then every ``b^l``'s) as read-only
        host copies, like ``weights``, or ``None`` before any training with momentum or L1.
        Assign to change them: ``net.velocities[i] = v`` or ``net.velocities = [...]`` (shapes
        of the parameters, finite values, else ``ShapeError``)."""
        if self._velocities is None:
            return None
        return ParameterList(self, self._velocities, "velocities")

    @velocities.setter
    def velocities(self, values: Iterable[Any] | None) -> None:
        if values is None:
            self._velocities = None
            return
        with self.backend.activate():
            buffers = self._velocities or [self.backend.zeros(tuple(p.shape))
                                           for p in self.parameters()]
            ParameterList(self, buffers, "velocities").assign(values)  # all or nothing
        self._velocities = buffers

    def _velocity_buffers(self) -> list[Array]:
        """The device velocities, zero when training with momentum or L1 first asks for them."""
        if self._velocities is None:
            self._velocities = [self.backend.zeros(tuple(p.shape)) for p in self.parameters()]
        return self._velocities

    # -- the matrix form ----------------------------------------------------------------
    def _input(self, x: Any, name: str = "X") -> Array:
        """A batch on this network's device: host data moved once, other devices refused."""
        x = check_batch(self.backend.check_device(x, name), self.sizes[0], name)
        return cast_checked(self.backend, x, name)

    def _workspace(self, m: int) -> Workspace:
        return self._cache.workspace(self.backend, self.sizes, m)

    def feedforward(self, a: Any) -> np.ndarray:
        """``a^L`` for a batch ``a`` of shape ``(sizes[0], m)``; ``(sizes[0], 1)`` is one sample."""
        with self.backend.activate():
            x = self._input(a, "a")
            ws = self._workspace(int(x.shape[1]))
            out = feedforward(self.backend, self._weights, self._biases, x, ws.activations,
                              self.kinds)
            return self.backend.to_numpy(out).copy()

    def backprop(self, x: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(nabla_b, nabla_w)``: ``∂C/∂b^l`` and ``∂C/∂W^l`` summed over the ``m`` columns.

        BP1 and BP2 give every ``δ^l``; BP3 and BP4 turn them into the gradient.
        """
        be = self.backend
        with be.activate():
            x = self._input(x, "x")
            m = int(x.shape[1])
            y = cast_checked(be, check_targets(be.check_device(y, "y"), self.sizes[-1], m, "y"),
                             "y")
            ws = self._workspace(m)
            feedforward(be, self._weights, self._biases, x, ws.activations, self.kinds)
            backpropagate(be, self.cost, self._weights, x, y, ws.activations, ws.deltas,
                          ws.scratch, self.kinds)
            inputs = [x, *ws.activations[:-1]]
            nabla_b = [be.to_numpy(bp3(be, d, out=be.empty((d.shape[0], 1)))) for d in ws.deltas]
            nabla_w = [be.to_numpy(bp4(be, d, a, out=be.empty(w.shape)))
                       for d, a, w in zip(ws.deltas, inputs, self._weights)]
        return nabla_b, nabla_w

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
        schedule: Any = None,
        momentum: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
    ) -> History:
        """Mini-batch SGD on arrays: ``X`` is ``(sizes[0], N)``, ``Y`` one-hot ``(sizes[-1], N)``
        or ``N`` integer labels; ``test`` is ``(X_test, labels)``.

        The data move to the device once; each mini-batch is gathered there. ``lmbda`` is the L2
        weight of the book's chapter 3 (``W ← (1 − ηλ/n) W − (η/m) ∂C/∂W``). ``callback(record,
        net)`` runs after every epoch and stops training when it returns ``False``.
        ``progress(done, cost_sum, n)`` runs after each of a few slices of every epoch (see
        :mod:`fastbp.model.progress`). ``schedule`` changes ``η`` between epochs (chapter 3's
        halving: :class:`~fastbp.model.monitoring.LearningRateSchedule`).

        Chapter 3's techniques: ``momentum`` ``μ`` and the L1 weight ``l1`` (``λ₁``) make each
        step ``v ← μ v − (η/m) ∂C/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v`` (the velocities
        stay with the network and in its file); ``dropout`` drops each hidden neuron with that
        probability for one mini-batch (:mod:`fastbp.core.dropout`). Epochs are numbered
        from ``len(self.history)``. Returns the per-epoch :class:`History` of this call.

        After each epoch the cost and the parameters are checked once (:mod:`fastbp.core.guard`): on
        NaN or inf the network gets back its last finite parameters and ``TrainingDiverged``
        names the epoch and layer; ``on_diverge="continue"`` warns and goes on instead.
        """
        config = TrainConfig(epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                             momentum=momentum, l1=l1, dropout=dropout, shuffle=shuffle,
                             verbose=verbose, on_diverge=on_diverge)
        check_callable("callback", callback), check_callable("progress", progress)
        return self.train_with(config, X, Y, test=test, callback=callback, progress=progress,
                               schedule=schedule)

    def train_with(self, config: TrainConfig, X: Any, Y: Any, *,
                   test: tuple[Any, Any] | None = None,
                   callback: Callable[[EpochRecord, Network], bool | None] | None = None,
                   progress: Callable[[int, float, int], None] | None = None,
                   schedule: Any = None) -> History:
        """:meth:`train` with its settings in one checked :class:`~fastbp.core.config.TrainConfig`
        (what ``fastbp train`` and ``fastbp.parallel.train`` build once)."""
        be = self.backend
        with be.activate():
            plan = self._plan(X, Y, batch_size=config.batch_size, eta=config.eta,
                              lmbda=config.lmbda, momentum=config.momentum, l1=config.l1,
                              dropout=config.dropout)
            evaluator = inputs.make_evaluator(be, self.sizes, test, plan.settings.batch_size,
                                              self.kinds)
            return driver.run_epochs(self, plan, evaluator, epochs=config.epochs,
                                     shuffle=config.shuffle, eta=config.eta, callback=callback,
                                     verbose=config.verbose, progress=progress,
                                     on_diverge=config.on_diverge, schedule=schedule)

    def epoch_plan(self, X: Any, Y: Any, *, batch_size: int, eta: float,
                   lmbda: float = 0.0, momentum: float = 0.0, l1: float = 0.0,
                   dropout: float = 0.0) -> EpochPlan:
        """``X``, ``Y`` on the device as the plan ``train`` runs: give it a cursor
        (``plan.start(order, seed)``, ``order`` device indices such as
        ``backend.index_array(order)``, ``seed`` the dropout masks'), then
        :func:`fastbp.core.epoch.run_epoch` runs one epoch of it (what the benchmarks time)."""
        _, _, mu, l1, p = check_step(1.0, 0.0, momentum, l1, dropout)  # as TrainConfig does
        with self.backend.activate():
            return self._plan(X, Y, batch_size=batch_size, eta=eta, lmbda=lmbda,
                              momentum=mu, l1=l1, dropout=p)

    def _plan(self, X: Any, Y: Any, *, batch_size: int, eta: float, lmbda: float,
              momentum: float, l1: float, dropout: float) -> EpochPlan:
        """The epoch plan of ``X``, ``Y`` on this network's parameters, chapter 3's settings
        already checked (``TrainConfig``, or :meth:`epoch_plan`), with the velocities when a
        step needs them (call inside ``backend.activate()``)."""
        mu, p = momentum, dropout
        if p and len(self.sizes) < 3:
            raise ConfigError("dropout drops hidden neurons, and this network has no hidden "
                              "layer")
        velocities = self._velocity_buffers() if mu or l1 else None
        params = Parameters(self._weights, self._biases, velocities)
        return inputs.make_plan(self.backend, Layers(self.sizes, self.cost, self.kinds), params,
                                X, Y, batch_size, eta, lmbda, self._cache, mu=mu, l1=l1,
                                dropout=p)

    def outputs_in_chunks(self, X: Any, chunk: int = 10_000) -> Iterator[Array]:
        """``a^L`` for consecutive blocks of ``chunk`` columns of ``X`` (device arrays, each
        valid until the next; call inside ``backend.activate()``)."""
        return inputs.outputs_in_chunks(self.backend, self.sizes, self.kinds, self._weights,
                                        self._biases, X, chunk)

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
            ev = Evaluator(be, self.sizes, inputs.samples_major(be, X), be.index_array(lab),
                           kinds=self.kinds)
            return ev.correct(self._weights, self._biases)


class LayerNetwork(LayerMethods, Network):  # type: ignore[misc]
    """``Network(layers, device=..., dtype=..., seed=...)``: a stack of chapter 6's layer kinds
    (:mod:`fastbp.model.layernet`), ending in ``Softmax``, with ``Network``'s API."""
