"""The epoch one rank runs in data-parallel training: its share of every mini-batch, one
reduction of the gradients, and the update every rank applies alike.

The cost is the average of per-sample costs (the book's assumption 1), so the gradient of a
mini-batch of ``m`` samples is the sum of the gradients of any split of it. With ``P`` ranks, rank
``r`` takes the contiguous share :func:`shard` of every mini-batch and computes
``Σ_x ∂C_x/∂W^l`` (BP4), ``Σ_x ∂C_x/∂b^l`` (BP3) and ``Σ_x C_x`` over it into views of one flat
buffer (:class:`FlatGradients`); one reduction per step gives every rank the whole batch's sums.

Chapter 3's techniques split alike: the update after the reduction goes through the velocities
(momentum, L1; :meth:`fastbp.devices.Backend.velocity_update`) on every rank, and with dropout
each rank takes its share's columns ``[lo, hi)`` of the whole mini-batch's masks (a sample's
column is its position in the mini-batch), so the shares together draw the masks one process
draws.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..core import dropout
from ..core.equations import backpropagate, bp3, bp4, feedforward
from ..core.plan import EpochPlan
from ..core.update import apply_gradients
from ..devices.backend import Array, Backend
from ..model.driver import default_epoch

if TYPE_CHECKING:
    from ..model.network import Network


def shard(m: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``m`` items split over ``size`` ranks.

    The first ``m mod size`` ranks take ``⌊m/size⌋ + 1`` items, the others ``⌊m/size⌋`` (zero
    when ``m < size``); the shares tile ``[0, m)`` in rank order.
    """
    q, extra = divmod(m, size)
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (1 if rank < extra else 0)


class FlatGradients:
    """``∂C/∂W^l`` and ``∂C/∂b^l`` for every layer, and the summed cost, as views of ONE flat
    buffer, so a single reduction sums all of them."""

    def __init__(self, backend: Backend, sizes: Sequence[int]) -> None:
        shapes = [(n, k) for k, n in zip(sizes[:-1], sizes[1:])]
        total = sum(n * k + n for n, k in shapes)
        self.flat = backend.zeros((total + 1,))
        self.grad_w: list[Array] = []
        self.grad_b: list[Array] = []
        off = 0
        for n, k in shapes:
            self.grad_w.append(self.flat[off : off + n * k].reshape(n, k))
            off += n * k
            self.grad_b.append(self.flat[off : off + n].reshape(n, 1))
            off += n
        self.cost = self.flat[total:]  # one slot: the summed cost of the mini-batch

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes)


class TimedEpoch:
    """An epoch function (one epoch over ``plan.cursor.order``, returning the summed cost) that adds
    up the seconds of its calls in ``seconds``, and of its reductions in ``comm_seconds``.

    Itself it runs the plain epoch (the backend's own, or the generic loop): with one rank,
    distributed training is bit for bit :meth:`fastbp.Network.train`.
    """

    def __init__(self, net: Network) -> None:
        self.backend = net.backend
        self.plain = default_epoch(net.backend)
        self.seconds = self.comm_seconds = 0.0

    def __call__(self, plan: EpochPlan) -> float:
        t0 = time.perf_counter()
        total = self.run(plan)
        self.seconds += time.perf_counter() - t0
        return total

    def run(self, plan: EpochPlan) -> float:
        return self.plain(plan)


class ShardEpoch(TimedEpoch):
    """The epoch of rank ``rank`` of ``size > 1``, handed to the one epoch driver
    (:func:`fastbp.model.driver.run_epochs`).

    Per mini-batch of ``m`` samples: this rank's share into :class:`FlatGradients`,
    ``reduce(flat)`` to sum it over the ranks, then on every rank alike the core's update rule
    (:func:`fastbp.core.update.apply_gradients`) ``W^l ← (1 − ηλ/n) W^l − (η/m) Σ_x ∂C_x/∂W^l``,
    ``b^l ← b^l − (η/m) Σ_x ∂C_x/∂b^l``; with momentum or L1 the velocity step
    ``v ← μ v − (η/m) g − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v``. With dropout the
    share's columns of the batch's masks (:meth:`masks`). With ``profile`` the device is idle
    before and after each reduction, so ``comm_seconds`` measures it exactly.
    """

    def __init__(self, net: Network, rank: int, size: int, reduce: Callable[[Array], None],
                 grads: FlatGradients, profile: bool = False) -> None:
        super().__init__(net)
        self.rank, self.size, self.reduce, self.grads = rank, size, reduce, grads
        self.profile = profile
        self.full_masks: dict[int, list[Array]] = {}  # batch size -> the batch's masks D^l

    def run(self, plan: EpochPlan) -> float:
        """SGD over ``plan.cursor.order`` with this rank's share of each mini-batch."""
        be, g = self.backend, self.grads
        settings, params, cursor = plan.settings, plan.params, plan.cursor
        order, batch, p = cursor.order, settings.batch_size, settings.dropout
        n = int(order.shape[0])
        total: Any = 0.0
        for start in range(0, n, batch):
            m = min(batch, n - start)
            lo, hi = shard(m, self.size, self.rank)
            if hi > lo:
                step = cursor.first_step + start // batch
                masks = self.masks(plan, step, m, lo, hi) if p else None
                self.gradients(plan, order[start + lo : start + hi], masks)
            else:
                g.flat.fill(0)
            self.sum_over_ranks(g.flat)
            apply_gradients(be, settings, params, g.grad_w, g.grad_b, m)
            total = total + g.cost[0]
        return float(total)  # reading the cost waits for the device

    def masks(self, plan: EpochPlan, step: int, m: int, lo: int, hi: int) -> list[Array]:
        """This rank's columns ``[lo, hi)`` of mini-batch ``step``'s dropout masks: the whole
        ``(n_l, m)`` masks ``D^l`` are drawn (:meth:`fastbp.devices.Backend.dropout_mask`, into
        buffers kept per ``m``) and their columns taken as views."""
        be = self.backend
        full = self.full_masks.get(m)
        if full is None:
            full = self.full_masks[m] = [be.empty((n, m)) for n in plan.layers.sizes[1:-1]]
        seed, p = plan.cursor.seed, plan.settings.dropout
        for l, d in enumerate(full):
            be.dropout_mask(dropout.step_key(seed, step, l), p, d)
        return [d[:, lo:hi] for d in full]

    def gradients(self, plan: EpochPlan, idx: Array, masks: list[Array] | None = None
                  ) -> None:
        """Feedforward, BP1–BP2 on the samples ``idx`` (with ``masks``, their columns of the
        dropout masks ``D^l``), then BP3 and BP4 summed over them into the flat buffer (and
        their summed cost into its cost slot)."""
        be, g = self.backend, self.grads
        layers, weights, biases = plan.layers, plan.params.weights, plan.params.biases
        ws = plan.workspace(be, int(idx.shape[0]))
        x = be.take_rows(plan.data.xs, idx, out=ws.xbuf).T
        y = be.take_rows(plan.data.ys, idx, out=ws.ybuf).T
        dropped = None if masks is None else ws.dropout_buffers()[1]
        feedforward(be, weights, biases, x, ws.activations, layers.kinds, masks, dropped)
        g.cost[...] = backpropagate(be, layers.cost, weights, x, y, ws.activations,
                                    ws.deltas, ws.scratch, layers.kinds, masks)
        fed = ws.activations if dropped is None else dropped
        inputs = [x, *fed[: len(weights) - 1]]
        for l, delta in enumerate(ws.deltas):
            bp4(be, delta, inputs[l], out=g.grad_w[l])
            bp3(be, delta, out=g.grad_b[l])

    def sum_over_ranks(self, flat: Array) -> None:
        """``flat ← Σ_ranks flat``, timed."""
        if self.profile:
            self.backend.synchronize()
        t = time.perf_counter()
        self.reduce(flat)
        if self.profile:
            self.backend.synchronize()
        self.comm_seconds += time.perf_counter() - t
