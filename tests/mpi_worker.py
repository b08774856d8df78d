"""Run under ``mpiexec``: train a small network with :func:`fastbp.distributed.train`.

``python tests/mpi_worker.py OUT.npz SIZES DTYPE BATCH EPOCHS N [LMBDA]``; rank 0 writes the
trained parameters, the network's random state and the history to ``OUT.npz``.
``FASTBP_TEST_FAULT=raise:RANK:EPOCH`` raises on ``RANK`` after ``EPOCH``;
``FASTBP_TEST_FAULT=kill:RANK:SECONDS`` kills ``RANK`` with SIGKILL that many seconds in.
``FASTBP_TEST_REDUCTION=host|cuda-aware-mpi`` sums NumPy gradients by that GPU path's code;
``FASTBP_TEST_REDUCTION=device`` gives the ``cpu`` device a reducer of its own
(:meth:`fastbp.devices.Backend.gradient_reducer`), which counts its calls.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import numpy as np

import fastbp.parallel.reduce
from fastbp import Network
from fastbp.distributed import train, world


def data(sizes: list[int], n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The same random training set on every rank (and in the single-process reference)."""
    rng = np.random.default_rng(seed)
    X = rng.random((sizes[0], n))
    labels = rng.integers(0, sizes[-1], n)
    return X, labels


class DeviceReducer:
    """A device's own reducer as a plugin would give it: built without communicating, it sums
    over ``comm`` when called (here by MPI on the host) and counts its calls."""

    path = "device-own"
    calls = 0

    def __init__(self, comm) -> None:  # noqa: ANN001
        self.comm = comm

    def __call__(self, flat: np.ndarray) -> None:
        from mpi4py import MPI

        type(self).calls += 1
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)


def main(argv: list[str]) -> int:
    out, sizes, dtype, batch, epochs, n = argv[:6]
    lmbda = float(argv[6]) if len(argv) > 6 else 0.0
    sizes_l = [int(s) for s in sizes.split(",")]
    comm = world()
    rank = comm.Get_rank()
    X, labels = data(sizes_l, int(n))
    # Only rank 0's seed matters: its parameters and random state are broadcast.
    net = Network(sizes_l, dtype=dtype, seed=1 if rank == 0 else 100 + rank)
    forced = os.environ.get("FASTBP_TEST_REDUCTION")
    if forced == "device":
        type(net.backend).gradient_reducer = lambda self, comm, flat: DeviceReducer(comm)
    elif forced:
        fastbp.parallel.reduce.backend_path = lambda backend: forced
    fault = os.environ.get("FASTBP_TEST_FAULT", "")
    callback = None
    if fault:
        kind, who, when = fault.split(":")
        if kind == "kill" and rank == int(who):
            timer = threading.Timer(float(when), os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        if kind == "raise":
            def callback(record, net):  # noqa: ANN001
                if rank == int(who) and record.epoch == int(when):
                    raise RuntimeError(f"injected failure on rank {rank}")
    history = train(net, X, labels, epochs=int(epochs), batch_size=int(batch), eta=0.5,
                    test=(X[:, :50], labels[:50]), lmbda=lmbda, callback=callback)
    # The history is computed once for all ranks: every rank returns the same records.
    records = comm.allgather(history.as_dicts())
    if any(r != records[0] for r in records):
        raise AssertionError(f"the ranks' histories differ: {records}")
    if rank == 0:
        arrays = {f"w{i}": w for i, w in enumerate(net.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(net.biases)})
        arrays["rng"] = np.frombuffer(json.dumps(net.rng.bit_generator.state).encode(), np.uint8)
        arrays["history"] = np.frombuffer(json.dumps(history.as_dicts()).encode(), np.uint8)
        arrays["comm_share"] = np.asarray(history.comm_share)
        arrays["reduction"] = np.frombuffer(history.reduction.encode(), np.uint8)
        arrays["device_reductions"] = np.asarray(DeviceReducer.calls)
        np.savez(out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
