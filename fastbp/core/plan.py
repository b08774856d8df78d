"""What one epoch works on, as typed pieces: the network's layers, the step settings, the
parameters, the data, the epoch's cursor and the caches; and the per-batch-size work buffers.

Mini-batches are gathered on the device from a sample-major copy of the data (``(N, n_in)``), so
``xbuf.T`` is the ``(n_in, m)`` batch with one sample per column, without a copy. Every buffer is
allocated once per batch size and reused: a warm step allocates no arrays. The update rule the
pieces feed is :mod:`fastbp.core.update`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ConfigError
from .memory import translate_oom
from .ops import Array, Ops

C = TypeVar("C")


class Workspace:
    """The buffers one step of batch size ``m`` needs: ``a^l``, ``δ^l``, scratch, the batch;
    with dropout also each hidden layer's mask ``D^l`` and ``ã^l = a^l ⊙ D^l`` (made when first
    asked for, :meth:`dropout_buffers`)."""

    def __init__(self, backend: Ops, sizes: list[int], m: int) -> None:
        self.m = m
        self.backend, self.sizes = backend, sizes
        with translate_oom(backend, sizes, m):  # MemoryError -> DeviceError with the numbers
            self.activations = [backend.empty((n, m)) for n in sizes[1:]]
            self.deltas = [backend.empty((n, m)) for n in sizes[1:]]
            self.scratch = [backend.empty((n, m)) for n in sizes[1:]]
            self.xbuf = backend.empty((m, sizes[0]))
            self.ybuf = backend.empty((m, sizes[-1]))
            self.grad_w = [backend.empty((n, k)) for k, n in zip(sizes[:-1], sizes[1:])]
            self.grad_b = [backend.empty((n, 1)) for n in sizes[1:]]
        self.masks: list[Array] | None = None
        self.dropped: list[Array] | None = None

    def dropout_buffers(self) -> tuple[list[Array], list[Array]]:
        """``(masks, dropped)``: ``D^l`` and ``ã^l`` for every hidden layer, ``(n_l, m)``."""
        if self.masks is None:
            hidden = self.sizes[1:-1]
            with translate_oom(self.backend, self.sizes, self.m):
                self.masks = [self.backend.empty((n, self.m)) for n in hidden]
                self.dropped = [self.backend.empty((n, self.m)) for n in hidden]
        assert self.dropped is not None
        return self.masks, self.dropped


@dataclass(frozen=True, eq=False)
class Layers:
    """The network an epoch trains: ``sizes`` (``n_1 … n_L``), the ``cost`` and each layer's
    neuron ``kinds`` (:mod:`fastbp.core.neurons`; ``None``: all sigmoid)."""

    sizes: list[int]
    cost: Any
    kinds: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StepSettings:
    """One step's settings over a training set of ``n`` samples: mini-batches of ``batch_size``
    (``m``), rate ``η`` (``eta``), L2 weight ``λ`` (``lmbda``), momentum ``μ`` (``mu``), L1
    weight ``λ₁`` (``l1``), dropout probability ``p`` (``dropout``); and what follows from them:
    ``decay = 1 − ηλ/n``, ``l2_step = ηλ/n``, ``l1_step = ηλ₁/n``, ``velocity`` (the step goes
    through the velocities: ``μ`` or ``λ₁`` set) and ``plain`` (the book's rule: neither, nor
    dropout). Frozen: the schedule changes ``η`` with :meth:`with_eta`."""

    batch_size: int
    eta: float
    n: int
    lmbda: float = 0.0
    mu: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    decay: float = field(init=False)
    l2_step: float = field(init=False)
    l1_step: float = field(init=False)
    velocity: bool = field(init=False)
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        derived = {"decay": 1.0 - self.eta * self.lmbda / self.n,
                   "l2_step": self.eta * self.lmbda / self.n,
                   "l1_step": self.eta * self.l1 / self.n,
                   "velocity": bool(self.mu or self.l1)}
        derived["plain"] = not derived["velocity"] and not self.dropout
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def with_eta(self, eta: float) -> StepSettings:
        """The same settings at rate ``eta`` (and with it ``decay``, ``l2_step``, ``l1_step``)."""
        return dataclasses.replace(self, eta=eta)


@dataclass(frozen=True, eq=False)
class Parameters:
    """The live device arrays a step updates in place: ``weights`` (``W^l``), ``biases``
    (``b^l``) and, when the step goes through them, the ``velocities`` ``v`` (one per ``W^l``,
    then one per ``b^l``). The lists are never replaced, only their arrays written."""

    weights: list[Array]
    biases: list[Array]
    velocities: list[Array] | None = None

    def arrays(self) -> list[Array]:
        """``W^2 … W^L, b^2 … b^L`` and the velocities, in that order."""
        return [*self.weights, *self.biases, *(self.velocities or ())]


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The training set on the device, sample-major: ``xs (N, n_in)``, ``ys (N, n_out)``."""

    xs: Array
    ys: Array

    @property
    def n(self) -> int:
        """``N``, the number of samples."""
        return int(self.xs.shape[0])


@dataclass(frozen=True, eq=False)
class Cursor:
    """Where an epoch (or a slice of one) stands: ``order`` the sample order (device indices),
    ``seed`` the epoch's dropout seed, ``first_step`` the number within its epoch of the first
    mini-batch of ``order`` (a slice keeps its epoch's masks), ``epoch`` the epoch's number in
    the network's history (a device that plans on real steps places its trials by it)."""

    order: Array = None
    seed: int = 0
    first_step: int = 0
    epoch: int = 0


class DeviceCaches:
    """One cache per device kind: :meth:`of` gives the one object of a device's own cache class
    (its buffers or programs, typed as it likes), made when first asked for."""

    def __init__(self) -> None:
        self._caches: dict[type, Any] = {}

    def of(self, kind: type[C]) -> C:
        """The cache of class ``kind`` (``kind()`` the first time)."""
        cache = self._caches.get(kind)
        if cache is None:
            cache = self._caches[kind] = kind()
        return cache


class Cache(DeviceCaches):
    """A network's caches, shared by its plans: the generic loop's :class:`Workspace` per batch
    size, and each device's own (:meth:`DeviceCaches.of`). They live on the network, not on the
    backend: networks sharing a backend instance may train in different threads."""

    def __init__(self) -> None:
        super().__init__()
        self.workspaces: dict[int, Workspace] = {}

    def workspace(self, backend: Ops, sizes: list[int], m: int) -> Workspace:
        """The work buffers for a batch of ``m`` columns (made once)."""
        ws = self.workspaces.get(m)
        if ws is None:
            ws = self.workspaces[m] = Workspace(backend, sizes, m)
        return ws


@dataclass(eq=False)
class EpochPlan:
    """What one epoch of SGD works on; ``sgd_epoch`` (or a backend's own) carries it out.

    ``layers`` the network, ``settings`` the step (replaced, never edited, when ``η``
    changes), ``params`` the arrays the steps update in place, ``data`` the training set,
    ``cursor`` this epoch's order and dropout seed (replaced per epoch or slice), ``cache`` the
    network's work buffers and device caches (kept across its plans) and ``bound`` what a
    device builds for this plan alone (programs that point at its arrays, freed with it).
    """

    layers: Layers
    settings: StepSettings
    params: Parameters
    data: TrainingData
    cache: Cache = field(default_factory=Cache)
    cursor: Cursor = field(default_factory=Cursor)
    bound: DeviceCaches = field(default_factory=DeviceCaches)

    def __post_init__(self) -> None:
        if self.settings.velocity and self.params.velocities is None:
            raise ConfigError("a step with momentum or L1 needs the velocities: pass them in "
                              "Parameters(weights, biases, velocities), one per W^l, then b^l")

    def workspace(self, backend: Ops, m: int) -> Workspace:
        """The network's work buffers for a batch of ``m`` (made once)."""
        return self.cache.workspace(backend, self.layers.sizes, m)

    def device_form(self) -> EpochPlan | None:
        """The plan as a device's own whole epoch takes it (a fully connected stack: itself; a
        layer stack's plan answers ``None`` where it is not one)."""
        return self

    def set_eta(self, eta: float) -> None:
        """The plan's steps from now on at rate ``η`` (new settings)."""
        self.settings = self.settings.with_eta(eta)

    def start(self, order: Array, seed: int = 0, first_step: int = 0, epoch: int = 0) -> None:
        """A new cursor: the epoch ``epoch`` (or a slice of it) over ``order`` with dropout
        ``seed``."""
        self.cursor = Cursor(order, seed, first_step, epoch)
