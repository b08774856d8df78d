"""Conformance checks of chapter 6's layers: convolution and max-pooling against the per-pixel
float64 oracle (:mod:`fastbp.core.reference_conv`) on awkward shapes, the column gathering
against its transpose, the argmax on ties, and a finite-difference gradient check of a small
conv net. Every device runs them through :mod:`fastbp.testing.conformance`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ..core import neurons, reference_conv
from ..core.layers import ConvPool, FullyConnected, Softmax, Stack
from ..devices.registry import resolve

# (channels, height, width), (filters, kh, kw), (ph, pw), activation: several channels, odd
# and non-square images, pool windows that do not divide the convolved map
SHAPES = [
    ((1, 7, 7), (2, 3, 3), (2, 2), "sigmoid"),
    ((3, 9, 8), (4, 2, 3), (3, 2), "tanh"),
    ((2, 11, 6), (3, 4, 2), (2, 3), "relu"),
    ((2, 6, 9), (2, 1, 5), (1, 2), "linear"),
]


def _net(shape: tuple, n_hidden: int = 5, n_out: int = 4) -> list[Any]:
    image, (f, kh, kw), pool, kind = shape
    conv = ConvPool((f, image[0], kh, kw), image, pool, kind)
    n_flat = int(np.prod(conv.out_shape))
    return [conv, FullyConnected(n_flat, n_hidden, "sigmoid"), Softmax(n_hidden, n_out)]


def _params(layers: list[Any], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every parameter drawn away from 0 (a zero softmax would hide errors in the layers
    below)."""
    return [tuple(rng.normal(size=s) * 0.5 for s in layer.param_shapes()) for layer in layers]


def _batch(layers: list[Any], m: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(int(np.prod(layers[0].in_shape)), m))
    labels = rng.integers(0, layers[-1].n_out, size=m)
    return x, labels, np.eye(layers[-1].n_out)[:, labels]


def _close(got: Any, want: np.ndarray, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= 1e-10 * scale, f"{what}: max |Δ| {err:.3g} over scale {scale:.3g}"


@pytest.mark.parametrize("shape", SHAPES, ids=[f"c{s[0][0]}-{s[0][1]}x{s[0][2]}-pool"
                                                f"{s[2][0]}x{s[2][1]}-{s[3]}" for s in SHAPES])
def test_conformance_conv_net_matches_the_per_pixel_oracle(conformance_device: Any,
                                                           shape: tuple) -> None:
    """A conv-pool → FC → softmax net's summed cost and every gradient agree with the
    per-sample, per-pixel loops to 1e-10 in float64, for a batch of 5, then batch 1, a short
    batch of 3 on the same buffers, and an odd batch of 41 (large enough for a device to split
    it, as ``cpu-jit`` does on two cores)."""
    backend = resolve(conformance_device.name, "float64")
    rng = np.random.default_rng(7)
    layers = _net(shape)
    params = _params(layers, rng)
    stack = Stack(backend, layers)
    on_device = [(backend.asarray(w), backend.asarray(b)) for w, b in params]
    for m in (5, 1, 3, 41):
        x, labels, y = _batch(layers, m, rng)
        cost, grads = stack.backprop(on_device, backend.asarray(x), backend.asarray(y))
        want_cost, want = reference_conv.backprop_loop(layers, params, x, labels)
        _close(float(cost), np.asarray(want_cost), f"cost at m={m}")
        for l, ((gw, gb), (ww, wb)) in enumerate(zip(grads, want)):
            _close(backend.to_numpy(gw), ww, f"∂C/∂W of layer {l} at m={m}")
            _close(backend.to_numpy(gb), wb, f"∂C/∂b of layer {l} at m={m}")


@pytest.mark.parametrize("shape", SHAPES[:2], ids=["one-channel", "three-channels"])
def test_conformance_conv_pool_forward_matches_the_oracle(conformance_device: Any,
                                                          shape: tuple) -> None:
    """The convolved map ``z`` and the layer's output ``f(maxpool(z) + b)``, sample by sample,
    as the loops give them."""
    backend = resolve(conformance_device.name, "float64")
    rng = np.random.default_rng(3)
    conv = _net(shape)[0]
    w, b = _params([conv], rng)[0]
    x, _, _ = _batch([conv, Softmax(1, 2)], 4, rng)
    stack = Stack(backend, [conv])
    out = stack.feedforward([(backend.asarray(w), backend.asarray(b))], backend.asarray(x))
    z = backend.to_numpy(stack.workspaces[0].buffers["z"])
    z = z.reshape(conv.filter_shape[0], *conv.conv_shape, 4)
    out = backend.to_numpy(out)
    for s in range(4):
        want_z = reference_conv.conv_sample(w.reshape(conv.filter_shape),
                                            x[:, s].reshape(conv.in_shape))
        _close(z[..., s], want_z, f"z of sample {s}")
        pooled = reference_conv.pool_sample(want_z, *conv.poolsize)[0] + b.reshape(-1, 1, 1)
        want = neurons.apply(conv.activation, pooled.reshape(pooled.shape[0], -1))
        _close(out[..., s], want.reshape(pooled.shape), f"output of sample {s}")


def test_conformance_fold_is_the_transpose_of_gather(conformance_device: Any) -> None:
    """``⟨cols(a), c⟩ = ⟨a, fold(c)⟩``: col2im is the adjoint of the gathering, to rounding."""
    backend = resolve(conformance_device.name, "float64")
    rng = np.random.default_rng(5)
    a, c = rng.normal(size=(3, 7, 6, 2)), rng.normal(size=(3, 3, 2, 5, 5, 2))
    cols = backend.gather_columns(backend.asarray(a), 3, 2, backend.empty(c.shape))
    folded = backend.fold_columns(backend.asarray(c), backend.empty(a.shape))
    left = float(np.vdot(backend.to_numpy(cols), c))
    right = float(np.vdot(a, backend.to_numpy(folded)))
    assert abs(left - right) <= 1e-12 * (np.abs(a).sum() * np.abs(c).max() * 6)


def test_conformance_max_pool_takes_the_first_maximum_and_ignores_the_border(
        conformance_device: Any) -> None:
    """On ties the window's first position wins (backward routes δ there alone); rows and
    columns past the last whole window get no error (Theano's ``ignore_border=True``)."""
    backend = resolve(conformance_device.name, "float64")
    z = np.zeros((1, 5, 5, 1))
    z[0, 1, 1, 0] = 2.0  # window (0, 0): a clear maximum at (1, 1)
    z[0, 4, 4, 0] = 9.0  # on the ignored border
    pooled = backend.empty((1, 2, 2, 1))
    index = backend.empty((1, 2, 2, 1), "int32")
    backend.max_pool(backend.asarray(z), 2, 2, pooled, index)
    want_pooled, where = reference_conv.pool_sample(z[..., 0], 2, 2)
    _close(backend.to_numpy(pooled)[..., 0], want_pooled, "pooled")
    delta = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    back = backend.max_pool_back(backend.asarray(delta), index, 2, 2, backend.empty(z.shape))
    want = reference_conv.unpool_sample(delta[..., 0], where, (5, 5))
    _close(backend.to_numpy(back)[..., 0], want, "routed δ")
    assert np.count_nonzero(want) == 4 and want[0, 4, 4] == 0.0


def test_conformance_conv_net_gradient_check(conformance_device: Any) -> None:
    """Central differences of the summed log-likelihood of a conv-pool → FC → softmax net agree
    with backprop in float64 (relative error ≤ 1e-6 on sampled entries of every parameter)."""
    backend = resolve(conformance_device.name, "float64")
    rng = np.random.default_rng(11)
    layers = _net(((2, 8, 7), (3, 3, 2), (2, 2), "tanh"))
    params = _params(layers, rng)
    x, _, y = _batch(layers, 3, rng)
    stack = Stack(backend, layers)
    xd, yd = backend.asarray(x), backend.asarray(y)

    def cost(ps: list) -> float:
        on_device = [(backend.asarray(w), backend.asarray(b)) for w, b in ps]
        return float(stack.backprop(on_device, xd, yd)[0])

    on_device = [(backend.asarray(w), backend.asarray(b)) for w, b in params]
    grads = [(backend.to_numpy(gw).copy(), backend.to_numpy(gb).copy())
             for gw, gb in stack.backprop(on_device, xd, yd)[1]]
    h = 1e-6
    for l in range(len(layers)):
        for which in (0, 1):
            p = params[l][which]
            for flat in rng.choice(p.size, size=min(4, p.size), replace=False):
                i = np.unravel_index(flat, p.shape)
                saved = p[i]
                p[i] = saved + h
                up = cost(params)
                p[i] = saved - h
                down = cost(params)
                p[i] = saved
                numeric, exact = (up - down) / (2 * h), grads[l][which][i]
                assert abs(numeric - exact) <= 1e-6 * max(1.0, abs(exact)), \
                    f"layer {l} param {which} entry {i}: {numeric} vs {exact}"
