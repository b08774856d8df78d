"""Data-parallel training over MPI: :mod:`~fastbp.parallel.distributed` gathers the public
names (also importable as ``fastbp.distributed``); :mod:`~fastbp.parallel.mpi`,
:mod:`~fastbp.parallel.reduce`, :mod:`~fastbp.parallel.shard` and :mod:`~fastbp.parallel.train`
hold them."""
