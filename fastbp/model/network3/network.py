"""network3's ``Network``: a stack of chapter 6's layers trained by the book's SGD.

The book's semantics: the cost of a mini-batch is the mean log-likelihood plus
``0.5·λ·Σ_l ‖W^l‖² / num_training_batches``, so a step is
``W ← (1 − ηλ/num_training_batches) W − (η/m) Σ_x ∂C_x/∂W`` and ``b ← b − (η/m) Σ_x ∂C_x/∂b``.
The mini-batches are taken in order, never shuffled; only whole mini-batches are used
(``size // mini_batch_size`` of them, in training and evaluation alike). Dropout keeps each
input of a fully connected or softmax layer with probability ``1 − p`` in training and scales
``W a`` by ``1 − p`` at evaluation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...core import dropout
from ...core.layers import Softmax, Stack
from ...devices.registry import resolve
from ...errors import ConfigError, DataError, ShapeError
from .data import size


def _book_seed() -> int:
    """The seed of network3's dropout stream: ``RandomState(0).randint(999999)``."""
    return int(np.random.RandomState(0).randint(999999))


class Network:
    """``Network(layers, mini_batch_size)``; ``device``/``dtype`` choose where and how it runs
    (``$FASTBP_DEVICE``, float32 by default)."""

    def __init__(self, layers: Sequence[Any], mini_batch_size: int, *,
                 device: Any = None, dtype: str = "float32") -> None:
        self.layers = list(layers)
        if not self.layers or not isinstance(self.layers[-1], Softmax):
            raise ConfigError("network3's Network ends in a SoftmaxLayer (its cost is the "
                              "log-likelihood): add one as the last layer")
        for below, above in zip(self.layers, self.layers[1:]):
            n_out, n_in = int(np.prod(below.out_shape)), int(np.prod(above.in_shape))
            if n_out != n_in:
                raise ShapeError(f"a layer gives {n_out} outputs ({below.out_shape}) but the "
                                 f"next takes {n_in} ({above.in_shape}): make them equal")
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) \
                or mini_batch_size < 1:
            raise ConfigError(f"mini_batch_size must be a positive integer, got "
                              f"{mini_batch_size!r}")
        self.mini_batch_size = mini_batch_size
        self.backend = resolve(device, dtype)
        self.params = [(self.backend.asarray(layer.params_host[0]),
                        self.backend.asarray(layer.params_host[1])) for layer in self.layers]
        self.stack = Stack(self.backend, self.layers)
        self.seed = _book_seed()

    # -- one mini-batch ---------------------------------------------------------------------
    def _masks(self, step: int, m: int) -> list[Any]:
        """Layer ``l``'s input mask for training step ``step``: 1 kept, 0 dropped."""
        masks: list[Any] = []
        for l, layer in enumerate(self.layers):
            p = layer.p_dropout
            if not p:
                masks.append(None)
                continue
            buf = self.stack.workspaces[l].get("mask", (int(np.prod(layer.in_shape)), m))
            self.backend.dropout_mask(dropout.step_key(self.seed, step, l), p, buf)
            masks.append(self.backend.xp.sign(buf, out=buf))  # 1/(1 − p) → 1
        return masks

    def train_mini_batch(self, x: Any, y: Any, eta: float, decay: float, step: int) -> Any:
        """One SGD step on columns ``x``, one-hot ``y``; returns the batch's mean cost."""
        m = int(x.shape[-1])
        cost, grads = self.stack.backprop(self.params, x, y, self._masks(step, m))
        for (w, b), (nabla_w, nabla_b) in zip(self.params, grads):
            self.backend.sgd_update(w, nabla_w, eta / m, decay)
            self.backend.sgd_update(b, nabla_b, eta / m)
        return cost / m

    # -- the book's SGD -----------------------------------------------------------------------
    def SGD(self, training_data: Any, epochs: int, mini_batch_size: int, eta: float,  # noqa: N802
            validation_data: Any, test_data: Any, lmbda: float = 0.0) -> float:
        """Train with mini-batch SGD, printing what network3 prints; returns the test accuracy
        at the best validation accuracy (``nan`` without test data)."""
        if mini_batch_size != self.mini_batch_size:
            raise ConfigError(f"SGD's mini_batch_size {mini_batch_size} differs from the "
                              f"Network's {self.mini_batch_size}: pass the same number")
        m = mini_batch_size
        num_training_batches = size(training_data) // m
        if num_training_batches < 1:
            raise ConfigError(f"{size(training_data)} training samples make no whole mini-batch "
                              f"of {m}: give more data or a smaller mini_batch_size")
        train = self.on_device(training_data)
        valid = self.on_device(validation_data)
        test = self.on_device(test_data) if test_data else None
        best, best_iteration, test_accuracy = 0.0, 0, float("nan")
        for epoch in range(epochs):
            self.sgd_epoch(train, eta, lmbda, epoch, verbose=True)
            iteration = num_training_batches * (epoch + 1) - 1
            accuracy = self.accuracy(valid)
            print(f"Epoch {epoch}: validation accuracy {accuracy:.2%}")
            if accuracy >= best:
                print("This is the best validation accuracy to date.")
                best, best_iteration = accuracy, iteration
                if test is not None:
                    test_accuracy = self.accuracy(test)
                    print(f"The corresponding test accuracy is {test_accuracy:.2%}")
        print("Finished training network.")
        print(f"Best validation accuracy of {best:.2%} obtained at iteration {best_iteration}")
        if test is not None:
            print(f"Corresponding test accuracy of {test_accuracy:.2%}")
        return test_accuracy

    def on_device(self, data: Any) -> _OnDevice:
        """An ``(x, y)`` data set moved to the network's device once, cut in mini-batches."""
        return _OnDevice(self.backend, data, self.mini_batch_size, self.layers[-1].n_out)

    def sgd_epoch(self, train: _OnDevice, eta: float, lmbda: float = 0.0, epoch: int = 0,
                  verbose: bool = False) -> None:
        """One epoch of the book's SGD over the whole mini-batches of ``train``
        (:meth:`on_device`), in order; ``verbose`` prints network3's progress lines."""
        batches = train.batches
        decay = 1.0 - eta * lmbda / batches
        for index in range(batches):
            iteration = batches * epoch + index
            if verbose and iteration % 1000 == 0:
                print(f"Training mini-batch number {iteration}")
            x, y = train.batch(index)
            self.train_mini_batch(x, y, eta, decay, iteration)

    def accuracy(self, data: Any) -> float:
        """The fraction classified right over the whole mini-batches of ``data`` (an
        ``(x, y)`` pair, or one already on the device)."""
        data = data if isinstance(data, _OnDevice) else self.on_device(data)
        right = 0
        for index in range(data.batches):
            x, _ = data.batch(index)
            a = self.stack.feedforward(self.params, x, train=False)
            right += int(self.backend.count_equal(self.backend.argmax_columns(a),
                                                  data.labels_of(index)))
        return right / (data.batches * data.m) if data.batches else 0.0


class _OnDevice:
    """An ``(x, y)`` data set on the device, one sample per column, cut in mini-batches."""

    def __init__(self, backend: Any, data: Any, m: int, classes: int) -> None:
        x, labels = data
        x, labels = np.asarray(x), np.asarray(labels).astype(np.int64).ravel()
        if x.ndim != 2 or x.shape[0] != labels.shape[0]:
            raise ShapeError(f"data must be (x, y) with x (N, n_in) and N labels, got x "
                             f"{x.shape} and {labels.shape[0]} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise DataError(f"labels run from {labels.min()} to {labels.max()}, but the softmax "
                            f"layer has {classes} outputs: give labels 0..{classes - 1}")
        n = x.shape[0]
        self.m, self.batches = m, n // m
        self.backend = backend
        self.x = backend.asarray(np.ascontiguousarray(x.T))
        onehot = np.zeros((classes, n))
        onehot[labels, np.arange(n)] = 1.0
        self.y = backend.asarray(onehot)
        self.labels = backend.asarray(labels, dtype="int64")
        self.xb = backend.empty((x.shape[1], m))
        self.yb = backend.empty((classes, m))

    def batch(self, index: int) -> tuple[Any, Any]:
        """Mini-batch ``index``: columns ``index·m`` to ``(index + 1)·m``."""
        lo, hi = index * self.m, (index + 1) * self.m
        self.xb[...] = self.x[:, lo:hi]
        self.yb[...] = self.y[:, lo:hi]
        return self.xb, self.yb

    def labels_of(self, index: int) -> Any:
        """The integer labels of mini-batch ``index``."""
        return self.labels[index * self.m:(index + 1) * self.m]
