#!/usr/bin/env bash
# fastbp's GPU check: one run of at most ~8 minutes on a lent GPU machine, which gives a verdict
# on the `cuda` device and its figures.
#
#   bash benchmarks/gpu/check.sh [--dry-run] [OUT]
#
# OUT (default: $OUT, else ./gpu-results) receives at most 7 files: check.log (this run),
# tests.log, kernels.log, timing.log, sanitizer.log, results.json and results.md.
#
# The machine it is written for is offline: Python 3.12 with cupy-cuda13x, numpy, scipy, numba,
# threadpoolctl, pytest, pytest-benchmark, hypothesis, JAX (CUDA) and PyTorch (CUDA) installed,
# and only this checkout copied over. MNIST travels inside the checkout in the ignored folder
# .gpu-data/ (train-images-idx3-ubyte.gz, ...; or set FASTBP_DATA); without it the timings use
# random data of MNIST's shape.
#
# Stages, each under its own time limit, each reported, none stopping the next:
#   environment  the GPU, CPU, packages and settings that shape the figures
#   install      pip install --no-deps --no-build-isolation -e . -e ./backends/cupy; if pip
#                cannot build here, the checkout on PYTHONPATH with its entry points
#   cuda-headers where CuPy cannot find the CUDA headers to compile with, CUDA_PATH set to a
#                folder of them found on the machine (a toolkit, or pip's nvidia packages)
#   devices      python -m fastbp devices
#   plans        fastbp tune --device cuda on the book's configurations ([784,30,10] and
#                [784,100,10] at batches 10 and 100, [784,1024,1024,10] at 256): graph or eager
#                measured by the planner, its table kept in results (report.py plans)
#   gpu-tests    pytest -m gpu backends/cupy/tests/test_cupy_gpu.py
#   kernels      every raw kernel against NumPy float64, outputs poisoned with NaN, awkward shapes
#   timing       graph vs eager vs cpu vs PyTorch eager vs JAX lax.scan (benchmarks/speed_cuda.py)
#   sanitizer    compute-sanitizer memcheck and racecheck on a short epoch, where it runs
#   report       results.json and results.md, with the targets checked
#
# --dry-run runs every stage on this machine against the NumPy stand-in for CuPy
# (backends/cupy/tests/fastbp_fake_cupy.py) with small sizes, and installs nothing: it catches a
# typo, a missing import or a wrong path before a GPU is spent on it.
#
# FASTBP_CHECK_SECONDS (default 470) is the budget of the whole run; PYTHON the interpreter.
# Exits 1 when a stage failed or ran out of time, 0 otherwise.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
DRY=0
OUT_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    -*) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    *) OUT_DIR=$1 ;;
  esac
  shift
done
OUT_DIR=${OUT_DIR:-${OUT:-$ROOT/gpu-results}}
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${PYTHON:-python3}
BUDGET=${FASTBP_CHECK_SECONDS:-470}
RESERVE=20  # seconds kept for the report
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastbp-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
DEADLINE=$((START + BUDGET))
cd "$ROOT" || exit 2

export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with CuPy and PyTorch
# FP32 everywhere, as fastbp computes: no TF32 in cuBLAS (any library), none in JAX's dots
export NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE      # the benchmark rules: never a forced slow kernel
# Every stage but plans runs the paths it names (the graph and eager contenders, the tests'
# switches) by the fixed estimates; plans measures; the plan cache lives in the work folder.
export FASTBP_PLAN=off FASTBP_CACHE="$WORK/plan-cache"
DATA=""
for d in "${FASTBP_DATA:-}" "$ROOT/.gpu-data" "$ROOT/../shared/data/mnist"; do
  if [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ]; then
    DATA=$(cd "$d" && pwd)
    break
  fi
done
if [ -n "$DATA" ]; then export FASTBP_DATA="$DATA"; fi

note() {  # note STAGE STATUS RC SECONDS NOTE: one line of the stage table
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$WORK/stages.tsv"
  echo "== $1: $2 (rc $3, $4 s)${5:+ $5}"
}

STATUS=""
stage() {  # stage NAME LIMIT LOG CMD...: CMD under a time limit, its output appended to LOG
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$((DEADLINE - RESERVE - $(date +%s)))
  if [ "$left" -lt 10 ]; then
    STATUS=skipped
    note "$name" skipped - 0 "no time left of the ${BUDGET} s budget"
    return 0
  fi
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  echo
  echo "== $name (at most $limit s): $*"
  local t0 rc
  t0=$(date +%s.%N)
  if [ "$log" = - ]; then
    timeout -k 10 "$limit" "$@"
    rc=$?
  else
    { echo "== $name: $*"; timeout -k 10 "$limit" "$@"; } >> "$log" 2>&1
    rc=$?
    tail -n 12 "$log"
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) STATUS=ok ;;
    124|137) STATUS=timeout ;;
    *) STATUS=failed ;;
  esac
  note "$name" "$STATUS" "$rc" "$secs" "${NOTE:-}"
  NOTE=""
}

find_sanitizer() {  # the compute-sanitizer binary, wherever this image keeps it
  local c
  c=$(command -v compute-sanitizer 2>/dev/null) && { echo "$c"; return 0; }
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
           /opt/nvidia/*/compute-sanitizer /usr/bin/compute-sanitizer; do
    if [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  "$PY" - <<'EOF' 2>/dev/null
import glob, os, site, sys
bases = list(site.getsitepackages()) + [site.getusersitepackages()]
for base in bases:
    for p in glob.glob(os.path.join(base, "nvidia", "**", "compute-sanitizer"), recursive=True):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            print(p)
            sys.exit(0)
sys.exit(1)
EOF
}

main() {
  echo "fastbp GPU check $( ((DRY)) && echo '(dry run on the CuPy stand-in) ')in $ROOT"
  echo "results: $OUT_DIR; budget ${BUDGET} s; MNIST: ${DATA:-not found, random data}"
  NOTE=""

  if ((DRY)); then  # every stage's Python sees the stand-in as `import cupy`
    mkdir -p "$WORK/standin/cupy"
    cat > "$WORK/standin/cupy/__init__.py" <<EOF
import sys
sys.path.insert(0, "$ROOT/backends/cupy/tests")
import fastbp_fake_cupy
sys.modules[__name__] = fastbp_fake_cupy.FakeCuPy()
EOF
    export PYTHONPATH="$WORK/standin${PYTHONPATH:+:$PYTHONPATH}"
  fi

  stage environment 30 - "$PY" benchmarks/gpu/report.py env "$WORK/env.json"
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; fi

  # -- install: pip first; where it cannot build offline, the checkout on PYTHONPATH ----------
  if ((DRY)); then
    stage install 60 - "$PY" -m pip install --dry-run --no-deps --no-build-isolation \
      -e . -e ./backends/cupy
  else
    stage install 120 - "$PY" -m pip install --no-deps --no-build-isolation \
      -e . -e ./backends/cupy
  fi
  if [ "$STATUS" != ok ]; then
    export PYTHONPATH="$ROOT:$ROOT/backends/cupy:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    NOTE="fastbp and fastbp-cupy from the checkout on PYTHONPATH"
    stage install-fallback 30 - "$PY" benchmarks/gpu/report.py site "$WORK/site"
  fi

  # CuPy compiles kernels with the CUDA headers: if it finds none, point it at some found here
  if [ -z "${CUDA_PATH:-}" ]; then
    stage cuda-headers 60 - "$PY" benchmarks/gpu/report.py headers "$WORK/cuda_path"
    if [ -s "$WORK/cuda_path" ]; then export CUDA_PATH; CUDA_PATH=$(cat "$WORK/cuda_path"); fi
  fi

  stage devices 60 - "$PY" -m fastbp devices

  # -- the planner: graph or eager measured per configuration -----------------------------------
  local plan_args=()
  if ((DRY)); then plan_args=(--quick); fi
  stage plans 90 - "$PY" benchmarks/gpu/report.py plans "$WORK/plans.json" \
    ${plan_args[@]+"${plan_args[@]}"}

  # -- the gpu tests ---------------------------------------------------------------------------
  local marks="gpu"
  if ((DRY)); then marks="gpu and not slow"; fi
  stage gpu-tests 170 "$OUT_DIR/tests.log" "$PY" -m pytest -m "$marks" -q -rs \
    -p no:cacheprovider --junitxml="$WORK/junit.xml" backends/cupy/tests/test_cupy_gpu.py

  # -- raw kernels -------------------------------------------------------------------------------
  local quick=()
  if ((DRY)); then quick=(--quick); fi
  stage kernels 75 "$OUT_DIR/kernels.log" "$PY" benchmarks/gpu/kernels_check.py \
    --out "$WORK/kernels.json" ${quick[@]+"${quick[@]}"}

  # -- timing: what is left, less the sanitizer's share ----------------------------------------
  local left=$((DEADLINE - RESERVE - 100 - $(date +%s)))
  local budget=$((left < 200 ? left : 200))
  if [ "$budget" -lt 40 ]; then budget=40; fi
  local sizes=()
  if ((DRY)); then
    sizes=(--n 300 --repeat 1 --cases quick --bound-reps 1 --peak-size 128)
    budget=40
  fi
  stage timing $((budget + 45)) "$OUT_DIR/timing.log" "$PY" benchmarks/speed_cuda.py \
    --budget "$budget" --out "$WORK/timing.json" ${DATA:+--data "$DATA"} ${sizes[@]+"${sizes[@]}"}

  # -- compute-sanitizer -------------------------------------------------------------------------
  local sanitizer
  sanitizer=$(find_sanitizer)
  if ((DRY)); then
    NOTE="dry run: the short epoch without compute-sanitizer (found: ${sanitizer:-none})"
    stage sanitizer-memcheck 60 "$OUT_DIR/sanitizer.log" "$PY" benchmarks/gpu/short_epoch.py \
      --no-pool
    note sanitizer-racecheck skipped - 0 "dry run"
  elif [ -z "$sanitizer" ]; then
    echo "compute-sanitizer is not on this machine" >> "$OUT_DIR/sanitizer.log"
    note sanitizer-memcheck skipped - 0 "compute-sanitizer not found on this machine"
    note sanitizer-racecheck skipped - 0 "compute-sanitizer not found on this machine"
  else
    NOTE="$sanitizer"
    stage sanitizer-memcheck 50 "$OUT_DIR/sanitizer.log" "$sanitizer" --tool memcheck \
      --error-exitcode 3 --print-limit 20 "$PY" benchmarks/gpu/short_epoch.py --no-pool
    NOTE="$sanitizer (float32: races do not depend on the dtype)"
    stage sanitizer-racecheck 50 "$OUT_DIR/sanitizer.log" "$sanitizer" --tool racecheck \
      --error-exitcode 3 --print-limit 20 "$PY" benchmarks/gpu/short_epoch.py --no-pool \
      --dtypes float32
  fi

  # -- report ------------------------------------------------------------------------------------
  local dry=()
  if ((DRY)); then dry=(--dry-run); fi
  RESERVE=0
  stage report 30 - "$PY" benchmarks/gpu/report.py write "$WORK" "$OUT_DIR" ${dry[@]+"${dry[@]}"}
  if [ ! -s "$OUT_DIR/results.md" ]; then  # the report failed: the stage table at least
    {
      echo "# fastbp GPU check (the report stage failed; see check.log)"
      echo
      echo "| stage | status | rc | seconds | note |"
      echo "|---|---|---|---|---|"
      awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' \
        "$WORK/stages.tsv"
    } > "$OUT_DIR/results.md"
    awk -F'\t' 'BEGIN { printf "{\"report\": \"failed\", \"stages\": [" }
      { printf "%s{\"stage\": \"%s\", \"status\": \"%s\", \"rc\": \"%s\", \"seconds\": \"%s\"}",
        (NR > 1 ? ", " : ""), $1, $2, $3, $4 }
      END { print "]}" }' "$WORK/stages.tsv" > "$OUT_DIR/results.json"
  fi
  echo
  cat "$OUT_DIR/results.md"
  echo "== done in $(($(date +%s) - START)) s; results in $OUT_DIR"
}

main 2>&1 | tee "$OUT_DIR/check.log"
# exit 1 when a stage failed or ran out of time (every stage ran and reported regardless)
if awk -F'\t' '$2 == "failed" || $2 == "timeout" { bad = 1 } END { exit !bad }' \
    "$WORK/stages.tsv"; then
  exit 1
fi
exit 0
