#!/usr/bin/env bash
# The book's full runs (not in CI): 30 epochs, mini-batch 10, eta 3.0, quadratic cost, on the
# 50,000 MNIST training images, test accuracy after every epoch, for [784,30,10] and
# [784,100,10] with both inits and several seeds.
#
# The code is pinned: the commit COMMIT (default HEAD) is exported with `git archive` and run
# from there, so edits in the working tree during the runs cannot change the numbers.
# Each run's console output, its /usr/bin/time -v report and a .meta file (commit, date, load
# average at the start) go to logs/; curves.csv and summary.md are rebuilt from the logs.
#
# Usage, from anywhere: FASTBP_DATA=/path/to/mnist benchmarks/results/book/run.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
COMMIT="$(git -C "$ROOT" rev-parse "${COMMIT:-HEAD}")"
SEEDS="${SEEDS:-1 2 3 4 5}"
SNAP="$(mktemp -d)"
trap 'rm -rf "$SNAP"' EXIT
git -C "$ROOT" archive "$COMMIT" fastbp | tar -x -C "$SNAP"
cd "$HERE"
mkdir -p logs
for sizes in 784,30,10 784,100,10; do
  for init in standard scaled; do
    for seed in $SEEDS; do
      name="${sizes//,/-}_${init}_seed${seed}"
      echo "== $name"
      printf 'commit %s\ndate %s\nuptime %s\n' "$COMMIT" "$(date -Is)" "$(uptime)" \
        > "logs/$name.meta"
      PYTHONPATH="$SNAP" /usr/bin/time -v -o "logs/$name.time" \
        "$PYTHON" -m fastbp train --sizes "$sizes" --epochs 30 --batch-size 10 --eta 3.0 \
        --init "$init" --seed "$seed" --device cpu | tee "logs/$name.log"
    done
  done
done
"$PYTHON" summarize.py
