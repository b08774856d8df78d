"""``train``: :meth:`fastbp.Network.train` on every rank of an MPI communicator, through the
same epoch driver (:func:`fastbp.model.driver.run_epochs`), which gets this rank's epoch
(:mod:`fastbp.parallel.shard`) and a test set scored in shares.

The sample order of each epoch comes from the network's generator, made identical on every rank
at the start (broadcast from rank 0) and drawn by the driver as for one process, so ``P`` ranks
see exactly the mini-batches one process sees. One rank runs the plain epoch, bit for bit
``Network.train``; ``P > 1`` ranks agree with it per step to rounding (a sum split over ranks
rounds differently), which the steps of a long run at a large ``η`` may amplify.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import numpy as np

from ..core.config import TrainConfig
from ..core.evaluator import Evaluator
from ..core.records import EpochRecord, History, format_record
from ..core.validate import check_callable
from ..model.driver import run_epochs
from ..model.inputs import make_evaluator
from ..model.network import Network
from .mpi import (
    abort_on_error,
    agree,
    broadcast_parameters,
    check_parameters,
    mpi,
    rank_device,
    world,
)
from .reduce import backend_path, make_reducer, reduction_path
from .shard import FlatGradients, ShardEpoch, TimedEpoch, shard

Callback = Callable[[EpochRecord, Network], "bool | None"]


class DistributedHistory(History):
    """:class:`fastbp.History`, plus per epoch the seconds of the SGD steps
    (``step_seconds``, slowest rank) and the mean seconds a rank spent in the gradient
    reduction (``comm_seconds``); ``ranks`` and ``reduction`` say how it ran (``"none"``: one
    rank, nothing to sum)."""

    def __init__(self, ranks: int, reduction: str) -> None:
        super().__init__()
        self.ranks, self.reduction = ranks, reduction
        self.step_seconds: list[float] = []
        self.comm_seconds: list[float] = []

    @property
    def comm_share(self) -> list[float]:
        """Per epoch: time in the reduction / time of the SGD steps."""
        return [c / max(s, 1e-12) for c, s in zip(self.comm_seconds, self.step_seconds)]


class ShardEvaluator:
    """The test set of ``full`` scored in shares: each rank counts the hits of its share
    (:func:`fastbp.parallel.shard.shard`), and ``correct`` is their sum over the ranks."""

    def __init__(self, full: Evaluator, comm: Any) -> None:
        self.full, self.comm, self.n = full, comm, full.n
        self.first, self.last = shard(full.n, comm.Get_size(), comm.Get_rank())

    def correct(self, weights: list[Any], biases: list[Any]) -> int:
        return int(self.comm.allreduce(self.full.correct(weights, biases, self.first,
                                                         self.last)))


class EpochEnd:
    """The driver's ``callback`` on every rank: the record takes the slowest rank's timings (so
    every rank keeps the same history), the parameters must still agree bit for bit, rank 0
    prints, then the user's ``callback`` runs; training stops when it says so on any rank."""

    def __init__(self, comm: Any, epoch: TimedEpoch, history: DistributedHistory, n: int,
                 n_test: int | None, callback: Callback | None, verbose: bool) -> None:
        self.comm, self.epoch, self.history, self.n, self.n_test = comm, epoch, history, n, n_test
        self.callback, self.verbose = callback, verbose

    def __call__(self, record: EpochRecord, net: Network) -> bool:
        MPI = mpi()
        comm = self.comm
        times = np.array([self.epoch.seconds, record.seconds], dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
        comm_s = float(comm.allreduce(self.epoch.comm_seconds, op=MPI.SUM))
        self.epoch.seconds = self.epoch.comm_seconds = 0.0
        record.seconds = float(times[1])
        record.samples_per_s = self.n / max(float(times[0]), 1e-9)
        self.history.step_seconds.append(float(times[0]))
        self.history.comm_seconds.append(comm_s / comm.Get_size())
        check_parameters(net, comm, record.epoch)
        if self.verbose and comm.Get_rank() == 0:
            print(format_record(record, self.n_test), flush=True)
        stop = self.callback is not None and self.callback(record, net) is False
        return not comm.allreduce(int(stop), op=MPI.MAX)


def train(
    net: Network,
    X: Any,
    Y: Any,
    *,
    epochs: int,
    batch_size: int,
    eta: float,
    test: tuple[Any, Any] | None = None,
    comm: Any = None,
    lmbda: float = 0.0,
    shuffle: bool = True,
    callback: Callback | None = None,
    verbose: bool = False,
    profile: bool = False,
    on_diverge: str = "raise",
    momentum: float = 0.0,
    l1: float = 0.0,
    dropout: float = 0.0,
    schedule: Any = None,
) -> DistributedHistory:
    """:meth:`fastbp.Network.train` on every rank of ``comm`` (default ``MPI.COMM_WORLD``).

    Every rank passes the same ``X``, ``Y`` (and ``test``) and options; each gathers only its
    share of each mini-batch. Rank 0's parameters and random state are broadcast first. One
    rank ends bit for bit where ``net.train`` ends; ``P`` ranks take the same steps to rounding.
    ``verbose`` prints on rank 0 only; ``callback`` runs on every rank and training stops when
    it returns ``False`` on any rank. As with ``Network.train``, epochs are numbered from
    ``len(net.history)``, which every epoch extends, and ``on_diverge`` says what NaN or inf
    does (the same on every rank, since cost and parameters agree). ``profile`` synchronises
    the device around each reduction so ``comm_seconds`` measures it exactly (on the CPU it is
    exact anyway). ``momentum``, ``l1`` and ``dropout`` are chapter 3's techniques as in
    ``Network.train``: every rank keeps the same velocities (rank 0's at the start), and the
    shares of a mini-batch draw its dropout masks together; ``schedule`` as in ``Network.train``
    (every rank scores the same parameters, so every rank halves ``η`` alike). An exception on
    any rank aborts the whole job (see :func:`abort_on_error`).
    """
    with abort_on_error():
        comm = comm if comm is not None else world()
        config = TrainConfig(epochs=epochs, batch_size=batch_size, eta=eta, lmbda=lmbda,
                             momentum=momentum, l1=l1, dropout=dropout, shuffle=shuffle,
                             verbose=verbose, on_diverge=on_diverge)
        epochs, eta, lmbda = config.epochs, config.eta, config.lmbda
        shuffle, verbose = config.shuffle, config.verbose
        check_callable("callback", callback)
        be = net.backend
        backend_path(be)  # NumPy or CuPy arrays, else a clear error before any buffer is made
        with be.activate():
            plan = net.epoch_plan(X, Y, batch_size=batch_size, eta=eta, lmbda=lmbda,
                                  momentum=momentum, l1=l1, dropout=dropout)
            s = plan.settings
            evaluator = make_evaluator(be, net.sizes, test, s.batch_size, net.kinds)
            n, n_test = plan.data.n, (evaluator.n if evaluator else None)
            xp = be.xp
            data_sum = (float(xp.sum(plan.data.xs, dtype=xp.float64))
                        + float(xp.sum(plan.data.ys, dtype=xp.float64)))
            data_sum = float(f"{data_sum:.10e}")  # other data differ by far more than rounding
            agree(comm, "the network, data and options",
                  (net.sizes, net.cost.__name__, be.dtype, n, n_test, data_sum, epochs,
                   s.batch_size, eta, lmbda, s.mu, s.l1, s.dropout, shuffle,
                   len(net.history)))
            broadcast_parameters(net, comm, velocities=plan.params.velocities)
            check_parameters(net, comm)
            rank, size = comm.Get_rank(), comm.Get_size()
            epoch: TimedEpoch = TimedEpoch(net)
            history = DistributedHistory(size, "none")
            if size > 1:
                grads = FlatGradients(be, net.sizes)
                reduce = make_reducer(comm, be, grads.flat)
                epoch = ShardEpoch(net, rank, size, reduce, grads, profile)
                history.reduction = reduce.path
                evaluator = ShardEvaluator(evaluator, comm) if evaluator else None
            end = EpochEnd(comm, epoch, history, n, n_test, callback, verbose)
            run_epochs(net, plan, evaluator, epochs=epochs, shuffle=shuffle, eta=eta,
                       callback=end, on_diverge=on_diverge, epoch_fn=epoch, history=history,
                       schedule=schedule)
            return history


# -- the command line: ``mpiexec -n P fastbp train --distributed ...`` -----------------------
def run_command(run: Callable[[Any], int], args: Any) -> int:
    """Run the subcommand ``run(args)`` on this rank of ``MPI.COMM_WORLD``.

    ``--device cuda`` becomes this rank's GPU (:func:`rank_device`); ranks other than 0 print
    nothing on stdout (``args.rank`` tells the command which rank it is, so only rank 0
    saves); an exception on any rank aborts the job.
    """
    with abort_on_error():
        comm = world()
        rank, size = comm.Get_rank(), comm.Get_size()
        args.rank, args.in_mpi = rank, True
        args.device = rank_device(args.device, comm)
        if rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        else:
            print(f"fastbp: {size} rank(s) over MPI ({mpi().Get_library_version().split()[0]}); "
                  f"gradients summed by {reduction_path(args.device)}", flush=True)
        return run(args)


def trainer(net: Network) -> Callable[..., DistributedHistory]:
    """:func:`train` bound to ``net``: a drop-in for ``net.train`` in a command."""
    return functools.partial(train, net)
