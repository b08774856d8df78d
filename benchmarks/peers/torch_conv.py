"""PyTorch peer of the book's chapter-6 net, eager: ``Conv2d(1, 20, 5) → MaxPool2d(2) → ReLU →
Conv2d(20, 40, 5) → MaxPool2d(2) → ReLU → Linear(640, 100) → ReLU → Linear(100, 10)``, the mean
cross-entropy of the softmax (network3's mean log-likelihood) and ``optim.SGD(lr=η)``, as a
PyTorch user writes it. The conv's bias before the pooling equals network3's after it."""

from __future__ import annotations

from typing import Callable

import numpy as np


def setup(m: int, X: np.ndarray, labels: np.ndarray, eta: float, threads: int
          ) -> Callable[[int], None]:
    """``run(batches)``: that many SGD steps over ``X`` ``(N, 784)`` in order."""
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 20, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Conv2d(20, 40, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(640, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(net.parameters(), lr=eta)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32).reshape(-1, 1, 28, 28))
    ys = torch.from_numpy(labels.astype(np.int64))
    n_batches = len(xs) // m

    def run(batches: int) -> None:
        for i in range(batches):
            j = i % n_batches
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xs[j * m:(j + 1) * m]), ys[j * m:(j + 1) * m])
            loss.backward()
            opt.step()
    return run
