"""Benchmarks of fastbp: shared by ``fastbp bench`` and the pytest-benchmark suite in
``benchmarks/``.

- :mod:`.workloads`: the cases (step / epoch × device × implementation × sizes × batch × dtype),
  which make sense where, MNIST-shaped data, and a ready-to-time callable per case;
- :mod:`.flops`: training FLOPs per sample and the device's measured GEMM peak;
- :mod:`.machine`: CPU, BLAS and threads, GPUs and library versions of the run;
- :mod:`.peers`: loading the PyTorch / JAX peers of ``benchmarks/peers/`` and checking their
  gradients against fastbp's;
- :mod:`.runner` / :mod:`.suite`: timing without pytest, JSON in pytest-benchmark's layout;
- :mod:`.report`: the results table, the ratio table of two runs, the chart.

Nothing here imports an optional library at import time.
"""
