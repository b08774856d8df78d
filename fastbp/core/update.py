"""The update rule of one SGD step, written once against the device operations; the generic
epoch (:mod:`fastbp.core.epoch`) and MPI's shard epoch (:mod:`fastbp.parallel.shard`) both end
each mini-batch with it.

The book's rule (chapters 1–3), with ``α = η/m`` and the L2 factor ``decay = 1 − ηλ/n``:
``W^l ← (1 − ηλ/n) W^l − (η/m) ∂C/∂W^l``, ``b^l ← b^l − (η/m) ∂C/∂b^l``. With momentum ``μ`` or
the L1 weight ``λ₁`` it goes through the velocities:
``v ← μ v − (η/m) ∂C/∂W − (ηλ/n) W − (ηλ₁/n) sgn W``, ``W ← W + v`` (``b`` likewise, without the
L2 and L1 terms). The settings come from :class:`~fastbp.core.plan.StepSettings`.
"""

from __future__ import annotations

from typing import Sequence

from .ops import Array, Ops
from .plan import Parameters, StepSettings


def apply_gradients(backend: Ops, settings: StepSettings, params: Parameters,
                    grad_w: Sequence[Array], grad_b: Sequence[Array], m: int) -> None:
    """One step from the gradients summed over a mini-batch of ``m`` (BP4's ``∂C/∂W^l`` in
    ``grad_w``, BP3's ``∂C/∂b^l`` in ``grad_b``; both overwritten), in place on ``params``."""
    alpha = settings.eta / m
    weights, biases = params.weights, params.biases
    if not settings.velocity:
        decay = settings.decay
        for w, b, gw, gb in zip(weights, biases, grad_w, grad_b):
            backend.sgd_update(w, gw, alpha, decay)
            backend.sgd_update(b, gb, alpha)
        return
    velocities = params.velocities
    assert velocities is not None  # EpochPlan checks it
    mu, l2, l1, top = settings.mu, settings.l2_step, settings.l1_step, len(weights)
    for l, (w, b, gw, gb) in enumerate(zip(weights, biases, grad_w, grad_b)):
        backend.velocity_update(w, gw, velocities[l], alpha, mu, l2, l1)
        backend.velocity_update(b, gb, velocities[top + l], alpha, mu)


def apply_deltas(backend: Ops, settings: StepSettings, params: Parameters,
                 deltas: Sequence[Array], inputs: Sequence[Array], grad_w: Sequence[Array],
                 grad_b: Sequence[Array], m: int) -> None:
    """One step from the errors ``δ^l`` of a mini-batch of ``m`` and each layer's input
    ``a^{l-1}`` (``inputs``): BP3 ``∂C/∂b^l = Σ_j δ^l_j`` and BP4 ``∂C/∂W^l = δ^l (a^{l-1})ᵀ``
    folded into the book's rule (``Ops.sgd_weights``, ``Ops.sgd_biases``: one fused pass where a
    device has it), or computed into ``grad_w``/``grad_b`` for :func:`apply_gradients`."""
    if settings.velocity:
        for l, delta in enumerate(deltas):
            backend.matmul_nt(delta, inputs[l], out=grad_w[l])  # BP4
            backend.sum_columns(delta, out=grad_b[l])  # BP3
        apply_gradients(backend, settings, params, grad_w, grad_b, m)
        return
    alpha, decay = settings.eta / m, settings.decay
    for l, (w, b) in enumerate(zip(params.weights, params.biases)):
        backend.sgd_weights(w, deltas[l], inputs[l], alpha, decay, grad_w[l])
        backend.sgd_biases(b, deltas[l], alpha, grad_b[l])
