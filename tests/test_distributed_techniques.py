"""Data-parallel training with chapter 3's techniques: momentum, L1 and dropout over ``P``
ranks reach the parameters (and velocities) of one process with the same seed to rounding; the
shares of a mini-batch draw its dropout masks together; one rank is bit for bit
``Network.train``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker_techniques.py"
sys.path.insert(0, str(HERE))
from mpi_worker import data  # noqa: E402
from mpi_worker_techniques import network  # noqa: E402
from test_distributed import mpirun, needs_mpi  # noqa: E402


def single_process(sizes: list[int], dtype: str, batch: int, epochs: int, n: int, mu: float,
                   l1: float, p: float, lmbda: float) -> tuple[Any, list[dict]]:
    """The reference: ``Network.train`` in this process with rank 0's seed and data."""
    X, labels = data(sizes, n)
    net = network(sizes, dtype, 1)
    history = net.train(X, labels, epochs=epochs, batch_size=batch, eta=0.1,
                        test=(X[:, :50], labels[:50]), lmbda=lmbda, momentum=mu, l1=l1,
                        dropout=p)
    return net, history.as_dicts()


CASES = [  # ranks, dtype, batch, epochs, samples, momentum, l1, dropout, lambda
    (2, "float64", 10, 3, 95, 0.9, 0.0, 0.5, 0.0),    # momentum + dropout
    (2, "float64", 16, 2, 100, 0.6, 1.0, 0.3, 5.0),   # all three, with L2
    (3, "float64", 10, 2, 95, 0.9, 0.0, 0.5, 0.0),    # 10 = 4 + 3 + 3, last batch 5 = 2 + 2 + 1
    (3, "float64", 2, 2, 31, 0.5, 0.0, 0.4, 0.0),     # one rank idles every step
    (2, "float64", 10, 2, 60, 0.0, 2.0, 0.0, 0.0),    # L1 alone (velocities without μ)
    (2, "float32", 10, 2, 95, 0.9, 0.0, 0.5, 0.0),
    (1, "float64", 10, 2, 95, 0.9, 1.0, 0.5, 5.0),    # one rank: bit for bit
]


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_ranks_with_techniques_reach_the_single_process_parameters(tmp_path: Path,
                                                                   case: tuple) -> None:
    ranks, dtype, batch, epochs, n, mu, l1, p, lmbda = case
    sizes = [20, 9, 6, 3]
    out = tmp_path / "trained.npz"
    res = mpirun(ranks, [sys.executable, str(WORKER), str(out), "20,9,6,3", dtype, str(batch),
                         str(epochs), str(n), str(mu), str(l1), str(p), str(lmbda)])
    assert res.returncode == 0, res.stdout + res.stderr
    got = np.load(out)
    assert bytes(got["reduction"]).decode() == ("mpi" if ranks > 1 else "none")
    net, history = single_process(sizes, dtype, batch, epochs, n, mu, l1, p, lmbda)
    tol = dict(rtol=0, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    if ranks == 1:
        tol = dict(rtol=0, atol=0)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        np.testing.assert_allclose(got[f"w{i}"], w, **tol)
        np.testing.assert_allclose(got[f"b{i}"], b, **tol)
    velocities = net.velocities or []
    assert len(velocities) == (2 * (len(sizes) - 1) if mu or l1 else 0)
    for i, v in enumerate(velocities):
        np.testing.assert_allclose(got[f"v{i}"], v, **tol)
    assert json.loads(bytes(got["rng"])) == net.rng.bit_generator.state
    dist = json.loads(bytes(got["history"]))
    assert [r["correct"] for r in dist] == [r["correct"] for r in history]
    np.testing.assert_allclose([r["cost"] for r in dist], [r["cost"] for r in history],
                               rtol=0 if ranks == 1 else 1e-6 if dtype == "float32" else 1e-12)


@needs_mpi
def test_one_rank_with_techniques_is_bit_for_bit_network_train() -> None:
    """``train`` on a one-rank communicator with momentum, L1 and dropout: every bit of every
    parameter and velocity, the costs and the random state equal ``Network.train``'s."""
    from mpi4py import MPI

    from fastbp.distributed import train

    sizes = [30, 12, 8, 4]
    X, labels = data(sizes, 300)
    kw = dict(epochs=2, batch_size=10, eta=0.1, lmbda=2.0, momentum=0.8, l1=0.5, dropout=0.4,
              test=(X[:, :50], labels[:50]))
    one = network(sizes, "float64", 1)
    h1 = one.train(X, labels, **kw)
    dist = network(sizes, "float64", 1)
    h2 = train(dist, X, labels, comm=MPI.COMM_SELF, **kw)
    assert h2.ranks == 1
    for a, b in zip([*one.weights, *one.biases, *one.velocities],
                    [*dist.weights, *dist.biases, *dist.velocities]):
        assert np.array_equal(a, b)
    assert [(r.cost, r.correct) for r in h1] == [(r.cost, r.correct) for r in h2]
    assert one.rng.bit_generator.state == dist.rng.bit_generator.state



def test_shares_draw_the_whole_batch_masks() -> None:
    """Rank ``r``'s mask columns, side by side over the ranks, are the masks of the whole
    mini-batch (:mod:`fastbp.core.dropout`), also for uneven shares."""
    from fastbp import Network
    from fastbp.core import dropout
    from fastbp.distributed import FlatGradients, ShardEpoch, shard

    sizes, m, p, seed, step = [5, 7, 4, 3], 10, 0.5, 321, 6
    net = Network(sizes, dtype="float64", seed=0)
    X, labels = data(sizes, m)
    plan = net.epoch_plan(X, labels, batch_size=m, eta=0.1, dropout=p)
    plan.start(plan.cursor.order, seed)
    for size in (2, 3, 4):
        parts = []
        for rank in range(size):
            epoch = ShardEpoch(net, rank, size, lambda flat: None,
                               FlatGradients(net.backend, sizes))
            lo, hi = shard(m, size, rank)
            parts.append([np.array(d) for d in epoch.masks(plan, step, m, lo, hi)])
        for l in range(len(sizes) - 2):
            want = dropout.mask(dropout.step_key(seed, step, l), p, sizes[l + 1], m)
            np.testing.assert_array_equal(np.hstack([part[l] for part in parts]), want)
