"""JAX peer of the book's chapter-6 net: the same layers as :mod:`torch_conv` written with
``lax.conv_general_dilated`` and ``lax.reduce_window``, the mean log-likelihood, plain SGD, and
the whole run as one ``jit`` of a ``lax.scan`` over the mini-batches (each gathered inside the
scan with ``dynamic_slice``, as training must)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def setup(m: int, X: np.ndarray, labels: np.ndarray, eta: float, threads: int
          ) -> Callable[[int], None]:
    """``run(batches)``: that many SGD steps over ``X`` ``(N, 784)`` in order."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)

    def draw(*shape: int, fan_in: int) -> jnp.ndarray:
        return jnp.asarray(rng.normal(0, 1 / np.sqrt(fan_in), shape), dtype=jnp.float32)

    params = [(draw(20, 1, 5, 5, fan_in=25), jnp.zeros(20)),
              (draw(40, 20, 5, 5, fan_in=500), jnp.zeros(40)),
              (draw(640, 100, fan_in=640), jnp.zeros(100)),
              (draw(100, 10, fan_in=100), jnp.zeros(10))]
    xs = jnp.asarray(np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28))
    ys = jnp.asarray(labels.astype(np.int32))
    n_batches = len(labels) // m

    def conv_pool(x, w, b):
        z = lax.conv_general_dilated(x, w, (1, 1), "VALID")
        p = lax.reduce_window(z, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return jax.nn.relu(p + b[None, :, None, None])

    def loss(ps, x, y):
        (w1, b1), (w2, b2), (w3, b3), (w4, b4) = ps
        a = conv_pool(conv_pool(x, w1, b1), w2, b2).reshape(x.shape[0], -1)
        a = jax.nn.relu(a @ w3 + b3)
        logp = jax.nn.log_softmax(a @ w4 + b4)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def step(ps, i):
        j = i % n_batches
        x = lax.dynamic_slice(xs, (j * m, 0, 0, 0), (m, 1, 28, 28))
        y = lax.dynamic_slice(ys, (j * m,), (m,))
        g = jax.grad(loss)(ps, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - eta * d, ps, g), None

    @jax.jit
    def epoch(ps, steps):
        return lax.scan(step, ps, steps)[0]

    state = {"params": params}

    def run(batches: int) -> None:
        state["params"] = epoch(state["params"], jnp.arange(batches))
        jax.block_until_ready(state["params"])
    return run
