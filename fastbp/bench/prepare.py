"""A ready-to-time callable for each benchmark case: fastbp's matrix form, the per-sample loop,
or a peer, all starting from the same parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..core.epoch import run_epoch
from .cases import CONV, CONV_NET, LOOP, MATRIX, Case
from .data import BenchError, DataSource

SEED = 1234
ETA = 3.0
CONV_ETA = 0.03  # the book's rate for its ReLU conv net


@dataclass
class Prepared:
    """``run()`` does the case's work once and returns when the device has finished it."""

    run: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)


def initial_parameters(sizes: Sequence[int], dtype: str) -> tuple[list, list]:
    """The book's N(0, 1) weights and biases, from :data:`SEED`: every implementation starts
    from these."""
    rng = np.random.default_rng(SEED)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    biases = [rng.standard_normal((n, 1)).astype(dtype) for _, n in pairs]
    weights = [rng.standard_normal((n, k)).astype(dtype) for k, n in pairs]
    return weights, biases


def prepare(case: Case, data: DataSource, peers: dict[str, Any] | None = None) -> Prepared:
    """The callable that times ``case``; peers are gradient-checked here first."""
    X, labels, Y = data(case.samples, case.dtype, case.sizes[0], case.sizes[-1])
    X, labels, Y = X[:, : case.samples], labels[: case.samples], Y[:, : case.samples]
    if case.workload == CONV:
        return _prepare_conv(case, X, labels)
    weights, biases = initial_parameters(case.sizes, case.dtype)
    if case.impl == MATRIX:
        return _prepare_matrix(case, X, labels, weights, biases)
    if case.impl == LOOP:
        return _prepare_loop(case, X, Y, weights, biases)
    if peers is None or case.impl not in peers:
        raise BenchError(f"unknown implementation {case.impl!r}")
    return _prepare_peer(case, peers[case.impl], X, Y, weights, biases)


def _network(case: Case, weights: list, biases: list) -> Any:
    from ..model.network import Network

    net = Network(list(case.sizes), device=case.device, dtype=case.dtype, seed=SEED)
    net.weights, net.biases = weights, biases
    return net


def _prepare_matrix(case: Case, X: np.ndarray, labels: np.ndarray, weights: list,
                    biases: list) -> Prepared:
    net = _network(case, weights, biases)
    be = net.backend
    info = {"backend": type(be).__name__}
    if case.workload == "epoch":
        def epoch() -> None:
            net.train(X, labels, epochs=1, batch_size=case.batch_size, eta=ETA, shuffle=True)
            be.synchronize()

        return Prepared(epoch, info)
    step = matrix_step(net, X, labels, ETA)
    return Prepared(step, info)


def conv_layers() -> list[Any]:
    """The layers of the ``conv`` cases: the book's two conv-pool layers with ReLU."""
    from ..core.layers.spec import NETS, parse_layers

    return parse_layers(NETS[CONV_NET])


def _prepare_conv(case: Case, X: np.ndarray, labels: np.ndarray) -> Prepared:
    """One shuffled epoch of the conv net (``Network(layers).train``), seeded by :data:`SEED`."""
    from ..model.network import Network

    net = Network(conv_layers(), device=case.device, dtype=case.dtype, seed=SEED)
    be = net.backend

    def epoch() -> None:
        net.train(X, labels, epochs=1, batch_size=case.batch_size, eta=CONV_ETA, shuffle=True)
        be.synchronize()

    return Prepared(epoch, {"backend": type(be).__name__, "network": repr(net)})


def matrix_step(net: Any, X: Any, labels: Any, eta: float) -> Callable[[], None]:
    """One SGD step of ``net`` on the whole batch ``X`` (``m`` columns), repeatable.

    Goes through the backend's own ``sgd_epoch`` (a compiled device runs its compiled loop) over
    an epoch plan of exactly one mini-batch, so it is the step ``Network.train`` takes, without
    the per-call checks and the move of the data to the device.
    """
    be = net.backend
    m = int(np.shape(X)[1])
    with be.activate():
        plan = net.epoch_plan(X, labels, batch_size=m, eta=eta)
        plan.start(be.index_array(np.arange(m)))

    def step() -> None:
        with be.activate():
            run_epoch(be, plan)
            be.synchronize()

    return step


def _prepare_loop(case: Case, X: np.ndarray, Y: np.ndarray, weights: list,
                  biases: list) -> Prepared:
    from ..core import reference

    X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
    rng = np.random.default_rng(SEED)
    m = case.batch_size

    def run() -> None:
        order = rng.permutation(X.shape[1]) if case.workload == "epoch" else None
        reference.sgd_epoch(weights, biases, X, Y, m, ETA, order=order)

    return Prepared(run, {"backend": "numpy per-sample loop"})


def _prepare_peer(case: Case, spec: Any, X: np.ndarray, Y: np.ndarray, weights: list,
                  biases: list) -> Prepared:
    from .peers import check_gradients

    model = spec.build(case.sizes, weights, biases, case.hardware, case.dtype)
    m = min(case.batch_size, 64)
    err = check_gradients(spec.name, model, case.sizes, weights, biases, np.asarray(X[:, :m]),
                          np.asarray(Y[:, :m]), case.dtype)
    if case.workload == "step":
        run = model.step(np.asarray(X), np.asarray(Y), ETA)
    else:
        run = model.epoch(np.asarray(X), np.asarray(Y), case.batch_size, ETA)
    info = dict(model.describe())
    info["gradient_check_rel_err"] = float(f"{err:.3g}")
    return Prepared(run, info)


# -- the matrix of cases ------------------------------------------------------------------------
