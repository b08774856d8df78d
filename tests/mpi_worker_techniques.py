"""Run under ``mpiexec``: train with chapter 3's techniques by :func:`fastbp.distributed.train`.

``python tests/mpi_worker_techniques.py OUT.npz SIZES DTYPE BATCH EPOCHS N MOMENTUM L1 DROPOUT
LMBDA``; rank 0 writes the trained parameters, the velocities, the network's random state and
the history to ``OUT.npz``.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from fastbp import Network
from fastbp.core.costs import LogLikelihoodCost
from fastbp.distributed import train, world

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mpi_worker import data  # noqa: E402


def network(sizes: list[int], dtype: str, seed: int) -> Network:
    """The network every run of this worker (and its single-process reference) trains."""
    return Network(sizes, dtype=dtype, seed=seed, cost=LogLikelihoodCost, activation="relu",
                   init="scaled")


def main(argv: list[str]) -> int:
    out, sizes, dtype, batch, epochs, n, mu, l1, p, lmbda = argv[:10]
    sizes_l = [int(s) for s in sizes.split(",")]
    comm = world()
    rank = comm.Get_rank()
    X, labels = data(sizes_l, int(n))
    # Only rank 0's seed matters: its parameters and random state are broadcast.
    net = network(sizes_l, dtype, 1 if rank == 0 else 100 + rank)
    history = train(net, X, labels, epochs=int(epochs), batch_size=int(batch), eta=0.1,
                    test=(X[:, :50], labels[:50]), lmbda=float(lmbda), momentum=float(mu),
                    l1=float(l1), dropout=float(p))
    records = comm.allgather(history.as_dicts())
    if any(r != records[0] for r in records):
        raise AssertionError(f"the ranks' histories differ: {records}")
    velocities = comm.allgather(None if net.velocities is None else list(net.velocities))
    if any(not all(np.array_equal(a, b) for a, b in zip(v, velocities[0]))
           for v in velocities if v is not None):
        raise AssertionError("the ranks' velocities differ")
    if rank == 0:
        arrays = {f"w{i}": w for i, w in enumerate(net.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(net.biases)})
        arrays.update({f"v{i}": v for i, v in enumerate(net.velocities or ())})
        arrays["rng"] = np.frombuffer(json.dumps(net.rng.bit_generator.state).encode(), np.uint8)
        arrays["history"] = np.frombuffer(json.dumps(history.as_dicts()).encode(), np.uint8)
        arrays["reduction"] = np.frombuffer(history.reduction.encode(), np.uint8)
        np.savez(out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
