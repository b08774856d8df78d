"""The book's API on :class:`~fastbp.Network`: ``SGD``, ``update_mini_batch``, ``evaluate``,
``cost_derivative`` and ``network2.py``'s ``default_weight_initializer`` and
``large_weight_initializer``, taking the book's data (lists of ``(x, y)`` column pairs).

``import fastbp as network`` then runs chapter 1's code unchanged; with ``network2.py``'s keywords
``SGD`` is chapter 3's (:func:`fastbp.model.monitoring.sgd_network2`). Every method here turns the
pairs into matrices once and calls the fast path, so the book's code trains at its speed.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..core.init import draw_parameters
from ..core.records import EpochRecord
from ..core.validate import check_positive
from ..errors import ConfigError
from .inputs import stack_pairs
from .monitoring import sgd_network2


class BookAPI:
    """The book's methods, mixed into :class:`~fastbp.Network` (which supplies ``train``,
    ``backprop``, ``count_correct`` and the parameters)."""

    # what the host class supplies
    sizes: list[int]
    kinds: tuple[str, ...]
    rng: np.random.Generator
    init: str
    weights: Any
    biases: Any

    def SGD(self, training_data: Iterable[tuple[Any, Any]], epochs: int, mini_batch_size: int,
            eta: float, test_data: Iterable[tuple[Any, Any]] | None = None, *,
            lmbda: float | None = None, evaluation_data: Any = None,
            monitor_evaluation_cost: bool = False, monitor_evaluation_accuracy: bool = False,
            monitor_training_cost: bool = False, monitor_training_accuracy: bool = False,
            early_stopping_n: int = 0) -> Any:
        """The book's ``SGD``: lists of ``(x, y)`` column pairs, one line printed per epoch.

        With any of ``network2.py``'s keywords (``lmbda``, ``evaluation_data``, ``monitor_*``,
        ``early_stopping_n``) it is that chapter's ``SGD`` and returns its four lists
        ``(evaluation_cost, evaluation_accuracy, training_cost, training_accuracy)``; see
        :func:`fastbp.model.monitoring.sgd_network2`.
        """
        chapter3 = dict(evaluation_data=evaluation_data,
                        monitor_evaluation_cost=monitor_evaluation_cost,
                        monitor_evaluation_accuracy=monitor_evaluation_accuracy,
                        monitor_training_cost=monitor_training_cost,
                        monitor_training_accuracy=monitor_training_accuracy,
                        early_stopping_n=early_stopping_n)
        flags = [v for k, v in chapter3.items() if k != "evaluation_data"]
        if lmbda is not None or evaluation_data is not None or any(flags):
            if test_data is not None:
                raise ConfigError("test_data belongs to chapter 1's SGD; with network2.py's "
                                  "keywords pass evaluation_data=... instead")
            return sgd_network2(self, training_data, epochs, mini_batch_size, eta,
                                lmbda=0.0 if lmbda is None else lmbda, **chapter3)
        X, Y = stack_pairs(training_data, "training_data")
        test = None
        if test_data is not None:
            test = stack_pairs(test_data, "test_data", labels=True)
        n_test = test[0].shape[1] if test is not None else 0

        def report(record: EpochRecord, net: Any) -> None:
            if record.correct is not None:
                print(f"Epoch {record.epoch}: {record.correct} / {n_test}", flush=True)
            else:
                print(f"Epoch {record.epoch} complete", flush=True)

        return self.train(X, Y, epochs=epochs, batch_size=mini_batch_size, eta=eta, test=test,
                          callback=report)

    def update_mini_batch(self, mini_batch: Iterable[tuple[Any, Any]], eta: float) -> None:
        """One SGD step on a list of ``(x, y)`` pairs: ``W ← W − (η/m) Σ_x ∂C_x/∂W``, same for b."""
        eta = check_positive("eta", eta)
        X, Y = stack_pairs(mini_batch, "mini_batch")
        nabla_b, nabla_w = self.backprop(X, Y)
        alpha = eta / X.shape[1]
        self.weights = [w - alpha * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - alpha * nb for b, nb in zip(self.biases, nabla_b)]

    def evaluate(self, test_data: Iterable[tuple[Any, Any]]) -> int:
        """How many ``(x, label)`` pairs the network gets right (the book's ``evaluate``)."""
        X, labels = stack_pairs(test_data, "test_data", labels=True)
        return self.count_correct(X, labels)

    def default_weight_initializer(self) -> None:
        """``network2.py``'s default: weights from N(0, 1/n_in), biases from N(0, 1), drawn
        anew from the network's generator (``init="scaled"``)."""
        self._draw_parameters("scaled")

    def large_weight_initializer(self) -> None:
        """``network2.py``'s alternative, chapter 1's: weights and biases from N(0, 1), drawn
        anew from the network's generator (``init="standard"``)."""
        self._draw_parameters("standard")

    def _draw_parameters(self, init: str) -> None:
        """Draw anew as ``Network(..., init=init)`` draws (:func:`fastbp.core.init.draw_parameters`:
        the same scale and gain for every neuron kind)."""
        weights, biases = draw_parameters(self.rng, self.sizes, self.kinds, init)
        self.weights, self.biases = weights, biases
        self.init = init

    def cost_derivative(self, output_activations: Any, y: Any) -> Any:
        """``∇_a C_x = a^L − y`` for the quadratic cost (the book's helper)."""
        return output_activations - y
