"""What one epoch works on: its plan (parameters, data, order, step sizes) and the per-batch-size
work buffers.

Mini-batches are gathered on the device from a sample-major copy of the data (``(N, n_in)``), so
``xbuf.T`` is the ``(n_in, m)`` batch with one sample per column, without a copy. Every buffer is
allocated once per batch size and reused: a warm step allocates no arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .memory import translate_oom
from .ops import Array, Ops


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


@dataclass
class EpochPlan:
    """What one epoch of SGD works on; ``sgd_epoch`` (or a backend's own) carries it out.

    ``xs``/``ys`` are the sample-major training set on the device, ``order`` the epoch's sample
    order (device indices), ``decay`` the L2 factor ``1 − ηλ/n`` (1 without regularisation; set
    both with :meth:`set_eta`),
    ``kinds`` each layer's neuron (:mod:`fastbp.core.neurons`; ``None``: all sigmoid).

    Chapter 3's techniques (:meth:`fastbp.core.ops.Ops.velocity_update`,
    :mod:`fastbp.core.dropout`): ``mu`` the
    momentum, ``l1`` the L1 weight ``λ₁``, ``velocities`` the buffers ``v`` (one per ``W^l``,
    then one per ``b^l``; present whenever ``mu`` or ``l1`` is set), ``dropout`` the
    probability ``p`` of dropping a hidden neuron, ``seed`` the epoch's mask seed and
    ``first_step`` the number of the first mini-batch of ``order`` within its epoch (an epoch
    run in slices keeps its masks).
    """

    sizes: list[int]
    weights: list[Array]
    biases: list[Array]
    cost: Any
    xs: Array
    ys: Array
    order: Array
    batch_size: int
    eta: float
    decay: float = 1.0
    workspaces: dict[int, Workspace] = field(default_factory=dict)
    kinds: tuple[str, ...] | None = None
    lmbda: float = 0.0
    mu: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    velocities: list[Array] | None = None
    seed: int = 0
    first_step: int = 0

    @property
    def plain(self) -> bool:
        """Whether every step is the book's plain rule (no momentum, L1 or dropout)."""
        return self.velocities is None and not self.dropout

    @property
    def l2_step(self) -> float:
        """``ηλ/n``, the L2 term of a step: ``1 − decay``."""
        return self.eta * self.lmbda / int(self.xs.shape[0])

    @property
    def l1_step(self) -> float:
        """``ηλ₁/n``, the L1 term of a step (times ``sgn W``)."""
        return self.eta * self.l1 / int(self.xs.shape[0])

    def set_eta(self, eta: float) -> None:
        """A new learning rate ``η`` and with it the L2 factor ``decay = 1 − ηλ/n``."""
        self.eta = eta
        self.decay = 1.0 - eta * self.lmbda / int(self.xs.shape[0])

    def workspace(self, backend: Ops, m: int) -> Workspace:
        """The plan's work buffers for a batch of ``m`` (made once)."""
        return cached_workspace(backend, self.sizes, self.workspaces, m)


def cached_workspace(backend: Ops, sizes: list[int], cache: dict[Any, Any], m: int
                     ) -> Workspace:
    """The work buffers for a batch of ``m`` columns, made once and kept in ``cache`` (a
    network's, shared by its plans)."""
    ws = cache.get(m)
    if ws is None:
        ws = cache[m] = Workspace(backend, sizes, m)
    return ws
