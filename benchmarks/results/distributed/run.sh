#!/usr/bin/env bash
# Data-parallel throughput on this machine: 1 rank (2 and 1 BLAS threads) and 2 ranks (1 BLAS
# thread each), then the table in results.md. Needs the mpi extra: pip install -e ".[mpi]".
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benchmarks/results/distributed/results.jsonl
bench=benchmarks/distributed/bench_distributed.py
py=${PYTHON:-python}
mpiexec=$(dirname "$(command -v "$py")")/mpiexec
[ -x "$mpiexec" ] || mpiexec=mpiexec
rm -f "$out"
uptime | tee benchmarks/results/distributed/uptime.txt
OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$mpiexec" -n 1 "$py" $bench --out $out --big \
    --label "1 rank, 2 BLAS threads"
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$mpiexec" -n 1 "$py" $bench --out $out --big \
    --label "1 rank, 1 BLAS thread"
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$mpiexec" -n 2 "$py" $bench --out $out --big --sweep \
    --label "2 ranks, 1 BLAS thread each"
uptime | tee -a benchmarks/results/distributed/uptime.txt
"$py" benchmarks/results/distributed/summarize.py "$out" > benchmarks/results/distributed/results.md
cat benchmarks/results/distributed/results.md
