"""JAX peers: the same sigmoid network and quadratic cost ``C = ½ Σ ‖a − y‖²``, gradients by
``jax.grad`` and the update ``p ← p − (η/m) ∇p``:

- ``jax-jit``: one ``jax.jit`` step per mini-batch, called from Python (the mini-batch gathered
  inside the step);
- ``jax-scan``: the whole epoch as one jitted ``lax.scan`` over the mini-batches (gathered inside
  the scan body), so no step returns to Python.

Functions are defined once at module level, so JAX compiles once per shape and dtype.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from fastbp.bench.peers import PeerSpec, PeerUnavailable

_FNS: dict[str, Any] = {}


def _jax() -> Any:
    try:
        import jax
    except ImportError as exc:
        raise PeerUnavailable("JAX is not installed (pip install jax)") from exc
    jax.config.update("jax_enable_x64", True)  # float64 cases need it; float32 stays float32
    if not _FNS:
        _FNS.update(_functions(jax))
    return jax


def _functions(jax: Any) -> dict[str, Any]:
    jnp, lax = jax.numpy, jax.lax

    def cost(params: Any, x: Any, y: Any) -> Any:
        a = x
        for w, b in params:
            a = jax.nn.sigmoid(a @ w.T + b)
        return 0.5 * jnp.sum((a - y) ** 2)

    grad = jax.grad(cost)

    def sgd(params: Any, x: Any, y: Any, lr: Any) -> Any:
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grad(params, x, y))

    def step_at(params: Any, X: Any, Y: Any, perm: Any, start: Any, lr: Any, b: int) -> Any:
        idx = lax.dynamic_slice(perm, (start,), (b,))
        return sgd(params, X[idx], Y[idx], lr)

    def epoch(params: Any, X: Any, Y: Any, idx: Any, lr: Any) -> Any:
        def body(p: Any, i: Any) -> tuple[Any, None]:
            return sgd(p, X[i], Y[i], lr), None

        return lax.scan(body, params, idx)[0]

    return {"grad": jax.jit(grad), "sgd": jax.jit(sgd, donate_argnums=0),
            "step_at": jax.jit(step_at, static_argnums=6, donate_argnums=0),
            "epoch": jax.jit(epoch, donate_argnums=0)}


class JaxModel:
    """One network's parameters in JAX; see :mod:`fastbp.bench.peers` for the methods."""

    def __init__(self, sizes: Sequence[int], weights: list[np.ndarray], biases: list[np.ndarray],
                 device_kind: str, dtype: str) -> None:
        jax = self.jax = _jax()
        platform = "cpu" if device_kind == "cpu" else "gpu"
        try:
            self.dev = jax.devices(platform)[0]
        except RuntimeError as exc:
            raise PeerUnavailable(f"JAX has no {platform} backend here "
                                  "(pip install 'jax[cuda12]' for GPUs)") from exc
        self.dtype = dtype
        self.params = [(self._put(w), self._put(np.asarray(b).reshape(-1)))
                       for w, b in zip(weights, biases)]

    def _put(self, a: np.ndarray) -> Any:
        return self.jax.device_put(np.asarray(a, dtype=self.dtype), self.dev)

    def _columns(self, a: np.ndarray) -> Any:
        """``(n, N)`` columns → a sample-major ``(N, n)`` array on the device."""
        return self._put(np.ascontiguousarray(np.asarray(a).T))

    def _lr(self, eta: float, m: int) -> Any:
        return self._put(np.asarray(eta / m))

    def gradients(self, X: np.ndarray, Y: np.ndarray) -> tuple[list, list]:
        g = _FNS["grad"](self.params, self._columns(X), self._columns(Y))
        return ([np.asarray(b).reshape(-1, 1) for _, b in g], [np.asarray(w) for w, _ in g])

    def step(self, X: np.ndarray, Y: np.ndarray, eta: float) -> Callable[[], None]:
        x, y = self._columns(X), self._columns(Y)
        lr, sgd = self._lr(eta, x.shape[0]), _FNS["sgd"]

        def run() -> None:
            self.params = sgd(self.params, x, y, lr)
            self.jax.block_until_ready(self.params)

        return run

    def _epoch_data(self, X: np.ndarray, Y: np.ndarray) -> tuple[Any, Any, int]:
        x, y = self._columns(X), self._columns(Y)
        return x, y, int(x.shape[0])

    def epoch_jit(self, X: np.ndarray, Y: np.ndarray, batch_size: int,
                  eta: float) -> Callable[[], None]:
        """A Python loop of jitted steps over a shuffled order."""
        x, y, n = self._epoch_data(X, Y)
        rng = np.random.default_rng(0)
        step_at = _FNS["step_at"]
        full, tail = self._lr(eta, batch_size), self._lr(eta, max(1, n % batch_size))

        def run() -> None:
            perm = self.jax.device_put(rng.permutation(n), self.dev)
            p = self.params
            for start in range(0, n - batch_size + 1, batch_size):
                p = step_at(p, x, y, perm, start, full, batch_size)
            if n % batch_size:
                start = n - n % batch_size
                p = step_at(p, x, y, perm, start, tail, n % batch_size)
            self.params = self.jax.block_until_ready(p)

        return run

    def epoch_scan(self, X: np.ndarray, Y: np.ndarray, batch_size: int,
                   eta: float) -> Callable[[], None]:
        """The whole epoch as one ``lax.scan`` (a short last batch as one more step)."""
        x, y, n = self._epoch_data(X, Y)
        rng = np.random.default_rng(0)
        steps = n // batch_size
        full, tail = self._lr(eta, batch_size), self._lr(eta, max(1, n % batch_size))

        def run() -> None:
            perm = rng.permutation(n)
            idx = self.jax.device_put(perm[: steps * batch_size].reshape(steps, batch_size),
                                      self.dev)
            p = _FNS["epoch"](self.params, x, y, idx, full)
            if n % batch_size:
                p = _FNS["sgd"](p, x[perm[steps * batch_size:]], y[perm[steps * batch_size:]],
                                tail)
            self.params = self.jax.block_until_ready(p)

        return run

    def describe(self) -> dict[str, Any]:
        return {"library": f"jax {self.jax.__version__}", "peer_device": str(self.dev)}


class JitModel(JaxModel):
    epoch = JaxModel.epoch_jit


class ScanModel(JaxModel):
    epoch = JaxModel.epoch_scan


PEERS = [
    PeerSpec("jax-jit", ("step", "epoch"), JitModel, "jax"),
    PeerSpec("jax-scan", ("epoch",), ScanModel, "jax"),
]
