"""PyTorch peers: ``nn.Sequential`` of ``Linear`` + ``Sigmoid`` layers, the quadratic cost
``C = ½ Σ ‖a − y‖²`` summed over the batch, ``loss.backward()`` and ``optim.SGD`` with
``lr = η/m``: the step as a PyTorch user writes it, eagerly (``torch-eager``) and with the
model and cost under ``torch.compile`` with its default options (``torch-compile``).

Models are cached per (sizes, dtype, device) and reloaded with the given parameters, so
``torch.compile`` compiles once per shape, not once per benchmark.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from fastbp.bench.peers import PeerSpec, PeerUnavailable

_CACHE: dict[tuple, tuple[Any, Callable]] = {}


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise PeerUnavailable(
            "PyTorch is not installed (pip install torch; the CPU wheel is enough for the CPU)"
        ) from exc
    try:  # the cases recompile one function for many shapes: keep every compiled version
        torch._dynamo.config.recompile_limit = 256
    except AttributeError:
        torch._dynamo.config.cache_size_limit = 256
    return torch


class TorchModel:
    """One network's parameters in PyTorch; see :mod:`fastbp.bench.peers` for the methods."""

    def __init__(self, sizes: Sequence[int], weights: list[np.ndarray], biases: list[np.ndarray],
                 device_kind: str, dtype: str, compiled: bool) -> None:
        torch = self.torch = _torch()
        if device_kind == "cuda" and not torch.cuda.is_available():
            raise PeerUnavailable("this PyTorch build sees no CUDA GPU")
        self.compiled = compiled
        self.dev = torch.device("cuda" if device_kind == "cuda" else "cpu")
        self.dt = getattr(torch, dtype)
        key = (compiled, tuple(sizes), dtype, device_kind)
        if key not in _CACHE:
            layers: list[Any] = []
            for k, n in zip(sizes[:-1], sizes[1:]):
                layers += [torch.nn.Linear(k, n), torch.nn.Sigmoid()]
            model = torch.nn.Sequential(*layers).to(device=self.dev, dtype=self.dt)

            def cost(x: Any, y: Any) -> Any:
                return 0.5 * ((model(x) - y) ** 2).sum()

            _CACHE[key] = (model, torch.compile(cost) if compiled else cost)
        self.model, self.cost = _CACHE[key]
        self.linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(self.linears, weights, biases):
                lin.weight.copy_(torch.from_numpy(np.asarray(w)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b).reshape(-1)))

    def _tensor(self, a: np.ndarray) -> Any:
        """``(n, N)`` columns → a sample-major ``(N, n)`` tensor on the device."""
        return self.torch.as_tensor(np.array(np.asarray(a).T, order="C"), dtype=self.dt,
                                    device=self.dev)

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def gradients(self, X: np.ndarray, Y: np.ndarray) -> tuple[list, list]:
        self.model.zero_grad(set_to_none=True)
        try:
            self.cost(self._tensor(X), self._tensor(Y)).backward()
        except Exception as exc:
            if self.compiled:  # e.g. no C compiler for the CPU kernels
                raise PeerUnavailable(f"torch.compile does not work here: {exc}") from exc
            raise
        nb = [lin.bias.grad.detach().cpu().numpy().reshape(-1, 1) for lin in self.linears]
        nw = [lin.weight.grad.detach().cpu().numpy() for lin in self.linears]
        self.model.zero_grad(set_to_none=True)
        return nb, nw

    def _sgd(self, lr: float) -> Any:
        return self.torch.optim.SGD(self.model.parameters(), lr=lr)

    def step(self, X: np.ndarray, Y: np.ndarray, eta: float) -> Callable[[], None]:
        x, y = self._tensor(X), self._tensor(Y)
        opt = self._sgd(eta / x.shape[0])

        def run() -> None:
            opt.zero_grad(set_to_none=True)
            self.cost(x, y).backward()
            opt.step()
            self._sync()

        return run

    def epoch(self, X: np.ndarray, Y: np.ndarray, batch_size: int,
              eta: float) -> Callable[[], None]:
        x, y = self._tensor(X), self._tensor(Y)
        n = x.shape[0]
        opt, tail = self._sgd(eta / batch_size), self._sgd(eta / max(1, n % batch_size))
        gen = self.torch.Generator(device=self.dev)
        gen.manual_seed(0)

        def run() -> None:
            perm = self.torch.randperm(n, device=self.dev, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                o = opt if idx.shape[0] == batch_size else tail
                o.zero_grad(set_to_none=True)
                self.cost(x[idx], y[idx]).backward()
                o.step()
            self._sync()

        return run

    def describe(self) -> dict[str, Any]:
        return {"library": f"torch {self.torch.__version__}", "peer_device": str(self.dev),
                "threads": self.torch.get_num_threads()}


def _eager(sizes, weights, biases, device_kind, dtype):  # noqa: ANN001, ANN202
    return TorchModel(sizes, weights, biases, device_kind, dtype, compiled=False)


def _compiled(sizes, weights, biases, device_kind, dtype):  # noqa: ANN001, ANN202
    return TorchModel(sizes, weights, biases, device_kind, dtype, compiled=True)


PEERS = [
    PeerSpec("torch-eager", ("step", "epoch"), _eager, "torch"),
    PeerSpec("torch-compile", ("step", "epoch"), _compiled, "torch"),
]
