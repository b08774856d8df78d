"""``Network(layers)``: a stack of chapter 6's layer kinds (:mod:`fastbp.layers`) with the API of
``Network(sizes)``, trained through the one epoch driver.

The inputs are columns ``(n_in, N)`` as for every network (``n_in = C·H·W`` for images, read
as ``(C, H, W, m)`` maps by a conv layer). The output layer is ``Softmax`` and the cost the
log-likelihood ``C = −Σ_x ln a^L_{y(x)}``. One step (:mod:`fastbp.core.layers.epoch`):
``W ← (1 − ηλ/n) W − (η/m) ∂C/∂W``, ``b ← b − (η/m) ∂C/∂b``, or with momentum ``μ`` / L1
``λ₁`` ``v ← μ v − (η/m) ∂C/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v``. Dropout is each
layer's ``p_dropout`` (network3's rule). ``W`` of a conv layer is ``(F, C·kh·kw)``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import devices
from ..core.config import TrainConfig
from ..core.costs import LogLikelihoodCost, get_cost
from ..core.layers import Softmax, Stack
from ..core.layers import epoch as layer_epoch
from ..core.layers.spec import describe, to_spec
from ..core.memory import translate_oom
from ..core.ops import Array
from ..core.plan import Cache, Parameters
from ..core.records import EpochRecord, History
from ..core.validate import (
    cast_checked,
    check_batch,
    check_callable,
    check_labels,
    check_seed,
    check_targets,
)
from ..errors import ConfigError, ShapeError
from ..io.checkpoint import ModelState
from . import driver, inputs

LAYERS = "fastbp.layers.ConvPool, FullyConnected or Softmax"


def is_layer_stack(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty list or tuple whose first entry is a layer object."""
    return isinstance(obj, (list, tuple)) and bool(obj) and layer_epoch.is_layer(obj[0])


def check_layers(layers: Any) -> list[Any]:
    """``layers`` as a list, or ``ConfigError``/``ShapeError`` naming what is wrong: each a layer
    kind, ``Softmax`` last and only last, each layer taking what the one below gives."""
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not layer_epoch.is_layer(layer):
            raise ConfigError(f"layer {i} is {type(layer).__name__}, not a layer kind: use "
                              f"{LAYERS}")
    if not isinstance(layers[-1], Softmax):
        raise ConfigError(f"the last layer is {type(layers[-1]).__name__}; a layer network ends "
                          "in fastbp.layers.Softmax (its cost is the log-likelihood): add one")
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, Softmax):
            raise ConfigError(f"layer {i} is a Softmax below the top; only the output layer is "
                              "softmax: use FullyConnected there")
    for i, (below, above) in enumerate(zip(layers, layers[1:])):
        n_out, n_in = int(np.prod(below.out_shape)), int(np.prod(above.in_shape))
        if n_out != n_in:
            raise ShapeError(f"layer {i} gives {n_out} outputs {below.out_shape} but layer "
                             f"{i + 1} takes {n_in} {above.in_shape}: make them equal")
    return layers


class LayerMethods:
    """What a network built from layer objects does differently from ``Network(sizes)``;
    :class:`fastbp.model.network.LayerNetwork` puts these methods before ``Network``'s."""

    backend: Any
    rng: np.random.Generator
    history: History
    sizes: list[int]
    kinds: tuple[str, ...]
    layers: list[Any]
    _weights: list[Array]
    _biases: list[Array]
    _velocities: list[Array] | None
    _cache: Cache
    weights: Any
    biases: Any
    velocities: Any
    dtype: str
    device: str

    def __init__(self, layers: Sequence[Any], *, cost: Any = LogLikelihoodCost,
                 device: Any = None, dtype: str = "float32", seed: int | None = None,
                 init: str | None = None, activation: Any = None) -> None:
        if get_cost(cost) is not LogLikelihoodCost:
            raise ConfigError("a layer network's cost is the log-likelihood of its Softmax "
                              f"output layer; leave cost out (got {cost!r})")
        if init is not None or activation is not None:
            raise ConfigError("a layer network's initialisation and neurons are its layers' "
                              "own: leave init= and activation= out (pass activation to each "
                              "ConvPool or FullyConnected)")
        self.layers = check_layers(layers)
        self.sizes = [int(np.prod(self.layers[0].in_shape)),
                      *(int(np.prod(layer.out_shape)) for layer in self.layers)]
        self.kinds = tuple(layer.activation for layer in self.layers)
        self.num_layers = len(self.sizes)
        self.cost = LogLikelihoodCost
        self.init = "layers"
        self.backend = devices.resolve(device, dtype)
        self.rng = check_seed(seed)
        n_params = sum(int(np.prod(s)) for layer in self.layers for s in layer.param_shapes())
        with translate_oom(self.backend, self.sizes, 1, what=f"the {n_params:,} parameters",
                           asked=n_params * (8 + np.dtype(self.backend.dtype).itemsize),
                           advice="use fewer or smaller layers, or a device with more memory"):
            drawn = [layer.init(self.rng) for layer in self.layers]  # W, then b, per layer
            with self.backend.activate():
                self._weights = [self.backend.asarray(w) for w, _ in drawn]
                self._biases = [self.backend.asarray(b) for _, b in drawn]
        self._velocities = None
        self._reset_work()
        self.history = History()

    def _reset_work(self) -> None:
        """Work buffers on this network's backend: training's, inference's, the dense form's."""
        self._cache = Cache()
        self._train_stack = Stack(self.backend, self.layers)
        self._infer_stack = Stack(self.backend, self.layers)

    def __repr__(self) -> str:
        layers = ", ".join(describe(layer) for layer in self.layers)
        return f"Network([{layers}], device={self.device!r}, dtype={self.dtype!r})"

    def to(self, device: Any) -> Any:
        """This network on another device, with identical parameters and random state."""
        other: Any = super().to(device)  # type: ignore[misc]  # Network.to, next in the MRO
        other._reset_work()
        return other

    def state(self, extra: dict[str, Any] | None = None) -> ModelState:
        """This network as plain state, its layer stack as specs (``state.layers``)."""
        return ModelState(sizes=list(self.sizes), cost=LogLikelihoodCost.name, dtype=self.dtype,
                          init=self.init, kinds=list(self.kinds), weights=list(self.weights),
                          biases=list(self.biases), rng=self.rng, history=History(self.history),
                          extra=extra or {}, layers=[to_spec(layer) for layer in self.layers],
                          velocities=None if self._velocities is None else list(self.velocities))

    def save(self, path: Any, *, extra: dict[str, Any] | None = None,
             format: str = "fastbp") -> Any:
        """Write the layer stack, parameters, random state and history to ``path`` atomically
        (:mod:`fastbp.io.checkpoint`); ``format="network2"`` is refused (the book's JSON holds
        fully connected sigmoid stacks only)."""
        if format == "network2":
            raise ConfigError("format='network2' writes network2.py's JSON, which holds fully "
                              "connected stacks of sizes only; a layer network (conv-pool, "
                              "softmax, its dropout) saves as format='fastbp'")
        return super().save(path, extra=extra, format=format)  # type: ignore[misc]

    def _draw_parameters(self, init: str) -> None:
        raise ConfigError("a layer network draws its parameters as its layers define; build a "
                          "new Network(layers, seed=...) to draw them anew")

    def epoch_plan(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("epoch_plan gives a fully connected network's plan (what the "
                          "benchmarks' steps and distributed training run); a layer network "
                          "trains in one process with train()")

    # -- the matrix form --------------------------------------------------------------------
    def feedforward(self, a: Any) -> np.ndarray:
        """``a^L`` for columns ``a`` ``(n_in, m)`` (evaluation's dropout scaling)."""
        with self.backend.activate():
            x = self._input(a, "a")  # type: ignore[attr-defined]
            out = self._infer_stack.feedforward(self._params(), x, train=False)
            return self.backend.to_numpy(out).copy()

    def backprop(self, x: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(nabla_b, nabla_w)``: ``∂C/∂b^l``, ``∂C/∂W^l`` summed over the columns, without
        dropout (:meth:`fastbp.core.layers.Stack.backprop`)."""
        be = self.backend
        with be.activate():
            x = self._input(x, "x")  # type: ignore[attr-defined]
            m = int(x.shape[1])
            y = cast_checked(be, check_targets(be.check_device(y, "y"), self.sizes[-1], m, "y"),
                             "y")
            _, grads = self._infer_stack.backprop(self._params(), x, y)
            return ([be.to_numpy(gb).copy() for _, gb in grads],
                    [be.to_numpy(gw).copy() for gw, _ in grads])

    def _params(self) -> list[tuple[Array, Array]]:
        return list(zip(self._weights, self._biases))

    def outputs_in_chunks(self, X: Any, chunk: int = 10_000) -> Iterator[Array]:
        """``a^L`` for consecutive blocks of ``chunk`` columns of ``X`` (device arrays, each
        valid until the next; call inside ``backend.activate()``)."""
        xs = inputs.samples_major(self.backend, check_batch(X, self.sizes[0], "X"))
        ev = layer_epoch.LayerEvaluator(self.backend, self.layers, xs, None, chunk)
        for start in range(0, ev.n, ev.chunk):
            yield ev.outputs(self._weights, self._biases, start, min(start + ev.chunk, ev.n))

    def count_correct(self, X: Any, labels: Any) -> int:
        """How many columns of ``X`` the network classifies as ``labels``."""
        with self.backend.activate():
            return self._evaluator((X, labels), "X", "labels").correct(self._weights,
                                                                       self._biases)

    def _evaluator(self, test: Any, xname: str = "test X", lname: str = "test labels"
                   ) -> layer_epoch.LayerEvaluator:
        be = self.backend
        if not (isinstance(test, (tuple, list)) and len(test) == 2):
            raise ConfigError("test must be a pair (X_test, labels)")
        X = check_batch(be.check_device(test[0], xname), self.sizes[0], xname)
        lab = check_labels(be.check_device(test[1], lname, host=True), self.sizes[-1],
                           int(X.shape[1]), lname)
        return layer_epoch.LayerEvaluator(be, self.layers, inputs.samples_major(be, X, xname),
                                          be.index_array(lab))

    # -- training -----------------------------------------------------------------------------
    def train(self, X: Any, Y: Any, *, epochs: int, batch_size: int, eta: float,
              test: tuple[Any, Any] | None = None, shuffle: bool = True, lmbda: float = 0.0,
              callback: Callable[[EpochRecord, Any], bool | None] | None = None,
              verbose: bool = False, progress: Callable[[int, float, int], None] | None = None,
              on_diverge: str = "raise", schedule: Any = None, momentum: float = 0.0,
              l1: float = 0.0, dropout: float = 0.0) -> History:
        """Mini-batch SGD as ``Network(sizes).train`` (the same options and driver: history,
        divergence guard, rollback, schedule); ``dropout=`` is refused: dropout is each layer's
        ``p_dropout``."""
        if dropout:
            raise ConfigError("a layer network drops by each layer's own p_dropout (network3's "
                              "rule): pass p_dropout to FullyConnected or Softmax instead of "
                              "dropout= to train")
        config = TrainConfig(epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                             momentum=momentum, l1=l1, dropout=0.0, shuffle=shuffle,
                             verbose=verbose, on_diverge=on_diverge)
        check_callable("callback", callback), check_callable("progress", progress)
        return self.train_with(config, X, Y, test=test, callback=callback, progress=progress,
                               schedule=schedule)

    def train_with(self, config: TrainConfig, X: Any, Y: Any, *,
                   test: tuple[Any, Any] | None = None, callback: Any = None,
                   progress: Any = None, schedule: Any = None) -> History:
        """:meth:`train` with its settings in one checked ``TrainConfig``."""
        if config.dropout:
            raise ConfigError("a layer network drops by each layer's own p_dropout: leave the "
                              "training dropout at 0")
        mu, l1 = config.momentum, config.l1  # checked by TrainConfig
        be = self.backend
        with be.activate():
            velocities = self._velocity_buffers() if mu or l1 else None  # type: ignore
            plan = self._plan(X, Y, config.batch_size, config.eta, config.lmbda, mu, l1,
                              velocities)
            evaluator = None if test is None else self._evaluator(test)
            return driver.run_epochs(
                self, plan, evaluator, epochs=config.epochs,  # type: ignore[arg-type]
                shuffle=config.shuffle, eta=config.eta, callback=callback,
                verbose=config.verbose, progress=progress, on_diverge=config.on_diverge,
                schedule=schedule,
                epoch_fn=lambda p: float(layer_epoch.run_layer_epoch(be, p)))

    def _plan(self, X: Any, Y: Any, batch_size: int, eta: float, lmbda: float, mu: float,
              l1: float, velocities: list[Array] | None) -> layer_epoch.LayerPlan:
        """The data on the device, sample-major, as a :class:`LayerPlan` (settings checked and
        data moved by :func:`fastbp.model.inputs.make_plan`, as for ``Network(sizes)``)."""
        p = max(layer.p_dropout for layer in self.layers)
        plan = inputs.make_plan(self.backend, layer_epoch.stack_layers(self.layers),
                                Parameters(self._weights, self._biases, velocities), X, Y,
                                batch_size, eta, lmbda, self._cache, mu=mu, l1=l1, dropout=p)
        return layer_epoch.layer_plan(plan, self._train_stack)

