"""The feedforward and the four equations of backpropagation, in matrix form.

A batch holds one sample per column: ``a^{l-1}`` is ``(n_{l-1}, m)``, ``W^l`` is ``(n_l, n_{l-1})``,
``b^l`` is ``(n_l, 1)``. Every function writes into a buffer it is given (``out``), so the
training loop allocates nothing per step; they reach arrays only through a backend.

``kinds`` names each layer's neuron (:mod:`fastbp.core.neurons`; ``None``: every layer sigmoid,
the book's network): ``a^l = f_l(z^l)`` and BP2 takes ``f_l'`` written from ``a^l``.

With dropout (:mod:`fastbp.core.dropout`) each hidden layer has a mask ``D^l``: the next layer
reads ``ã^l = a^l ⊙ D^l`` (kept in ``dropped``), BP2 multiplies ``δ^l`` by ``D^l`` and BP4 takes
``ã^{l-1}``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .neurons import kinds_of
from .ops import Array, Ops


def feedforward(
    backend: Ops, weights: Sequence[Array], biases: Sequence[Array], x: Array,
    activations: Sequence[Array], kinds: Sequence[str] | None = None,
    masks: Sequence[Array] | None = None, dropped: Sequence[Array] | None = None,
) -> Array:
    """``a^l = f_l(z^l)``, ``z^l = W^l a^{l-1} + b^l`` for every layer; ``a^1 = x``.

    ``activations[l]`` receives ``a^{l+2}`` (layer 1 is the input ``x`` itself); returns ``a^L``.
    With ``masks`` (one ``D^l`` per hidden layer) the next layer reads ``ã^l = a^l ⊙ D^l``,
    written into ``dropped[l]``.
    """
    a = x
    for l, (w, b, out, kind) in enumerate(
            zip(weights, biases, activations, kinds_of(kinds, len(weights)))):
        backend.matmul(w, a, out=out)
        a = backend.bias_activation(out, b, kind)
        if masks is not None and l < len(masks):
            assert dropped is not None
            a = backend.multiply(a, masks[l], out=dropped[l])
    return a


def bp1(backend: Ops, cost: Any, a_out: Array, y: Array, out: Array, scratch: Array) -> Array:
    """BP1, the output error: ``δ^L = ∇_a C ⊙ σ'(z^L)`` (sigmoid output), ``δ^L = a^L − y``
    (softmax with the log-likelihood). Returns the batch's summed cost."""
    return cost.output_error(backend, a_out, y, out, scratch)


def bp2(
    backend: Ops, w_next: Array, delta_next: Array, a: Array, out: Array, scratch: Array,
    kind: str = "sigmoid", mask: Array | None = None,
) -> Array:
    """BP2, the error one layer back: ``δ^l = ((W^{l+1})ᵀ δ^{l+1}) ⊙ f'(z^l)``, times the
    dropout mask ``D^l`` when there is one."""
    backend.matmul_tn(w_next, delta_next, out=out)
    backend.mul_activation_prime(out, a, kind, scratch)
    return out if mask is None else backend.multiply(out, mask, out=out)


def bp3(backend: Ops, delta: Array, out: Array) -> Array:
    """BP3: ``∂C/∂b^l = δ^l``, summed over the columns of the batch."""
    return backend.sum_columns(delta, out=out)


def bp4(backend: Ops, delta: Array, a_prev: Array, out: Array) -> Array:
    """BP4: ``∂C/∂W^l = δ^l (a^{l-1})ᵀ``, summed over the batch by the product itself."""
    return backend.matmul_nt(delta, a_prev, out=out)


def backpropagate(
    backend: Ops, cost: Any, weights: Sequence[Array], x: Array, y: Array,
    activations: Sequence[Array], deltas: Sequence[Array], scratch: Sequence[Array],
    kinds: Sequence[str] | None = None, masks: Sequence[Array] | None = None,
) -> Array:
    """BP1 then BP2 down to layer 2, after :func:`feedforward` filled ``activations``.

    ``deltas[l]`` receives ``δ^{l+2}``, shaped like ``activations[l]``; ``masks``: the dropout
    masks of the hidden layers, if any. Returns the summed cost.
    """
    kinds = kinds_of(kinds, len(weights))
    top = len(weights) - 1
    cost_sum = bp1(backend, cost, activations[top], y, deltas[top], scratch[top])
    for l in range(top - 1, -1, -1):
        bp2(backend, weights[l + 1], deltas[l + 1], activations[l], deltas[l], scratch[l],
            kinds[l], None if masks is None else masks[l])
    return cost_sum
