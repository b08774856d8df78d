#!/usr/bin/env bash
# fastbp's GPU check: one run of at most ~8.5 minutes on a lent GPU machine, which gives a
# verdict on the `cuda` device and its figures.
#
#   bash benchmarks/gpu/prepare.sh                  # here, first: MNIST into .gpu-data/
#   bash benchmarks/gpu/check.sh [--dry-run] [OUT]  # there, with .gpu-data/ sent along
#
# What travels: the checkout (tracked and untracked, not ignored, files) and one ignored path,
# .gpu-data/; give the command a limit of 560 s (the run's own budget is 500 s, with room for the
# stages' kill grace and the report).
#
# OUT (default: $OUT, else ./gpu-results) receives at most 7 files: check.log (this run),
# tests.log, kernels.log, conv.log, timing.log, sanitizer.log, results.json and results.md.
#
# The machine it is written for is offline: Python 3.12 with cupy-cuda13x, numpy, scipy, numba,
# threadpoolctl, pytest, pytest-benchmark, hypothesis, JAX (CUDA) and PyTorch (CUDA) installed,
# and only this checkout copied over. MNIST travels inside the checkout in the ignored folder
# .gpu-data/ (benchmarks/gpu/prepare.sh puts it there; or set FASTBP_DATA); without it the
# timings use random data of MNIST's shape.
#
# Stages, each under its own time limit, each reported, none stopping the next:
#   environment  the GPU, CPU, packages and settings that shape the figures
#   install      pip install --no-deps --no-build-isolation -e . -e ./backends/<each plugin>;
#                if pip cannot build here (no wheel, no setuptools), install-fallback puts the
#                checkout on PYTHONPATH with every shipped plugin (backends/*, numba's cpu-jit
#                included) and their entry points, and install is marked "replaced", no failure
#   cuda-headers where CuPy cannot find the CUDA headers to compile with, CUDA_PATH set to a
#                folder of them found on the machine (a toolkit, or pip's nvidia packages)
#   devices      python -m fastbp devices
#   timing       graph vs eager vs cpu vs PyTorch eager vs JAX lax.scan (benchmarks/speed_cuda.py),
#                the target cases first: [784,30,10] at m=10, then [784,1024,1024,10] at m=256
#                with its cuBLAS bound
#   gpu-tests    pytest -m gpu backends/cupy/tests/test_cupy_gpu{,_runs,_neurons}.py (every
#                neuron, cost and technique in float64, graphs on and off)
#   kernels      every raw kernel against NumPy float64, outputs poisoned with NaN, awkward shapes
#   conv         chapter 6's conv net (fastbp.network3): one float64 epoch against the cpu device
#                (relative difference ≤ 1e-10), then float32 samples/s at mini-batches 10 and 100
#   plans        fastbp tune --device cuda on the book's configurations ([784,30,10] and
#                [784,100,10] at batches 10 and 100, [784,1024,1024,10] at 256): graph or eager
#                measured by the planner, its table kept in results (report.py plans)
#   sanitizer    compute-sanitizer memcheck and racecheck on a short epoch, where it runs; one
#                that refuses this device (its own error, no report) is "unavailable", no failure
#   report       results.json and results.md, each target met, not met or not measured
#
# --dry-run runs every stage on this machine against the NumPy stand-in for CuPy
# (backends/cupy/tests/fastbp_fake_cupy.py) with small sizes, and installs nothing: it catches a
# typo, a missing import or a wrong path before a GPU is spent on it.
#
# FASTBP_CHECK_SECONDS (default 500) is the budget of the whole run; PYTHON the interpreter;
# FASTBP_SANITIZER a compute-sanitizer to use (found on the machine otherwise; in a dry run, only
# this one runs, over the short epoch on the stand-in); FASTBP_CHECK_SKIP a comma-separated list
# of stages not to run (noted as skipped).
# Exits 1 when a stage failed or ran out of time, 0 otherwise (also when pip could not install
# and the fallback did, and when compute-sanitizer is unavailable here).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
DRY=0
OUT_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,52p' "$0"; exit 0 ;;
    -*) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    *) OUT_DIR=$1 ;;
  esac
  shift
done
OUT_DIR=${OUT_DIR:-${OUT:-$ROOT/gpu-results}}
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${PYTHON:-python3}
BUDGET=${FASTBP_CHECK_SECONDS:-500}
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

restatus() {  # restatus STAGE STATUS NOTE: change a noted stage's status and note
  awk -F'\t' -v OFS='\t' -v n="$1" -v s="$2" -v t="$3" \
    '$1 == n { $2 = s; $5 = t } { print }' "$WORK/stages.tsv" > "$WORK/stages.new" &&
    mv "$WORK/stages.new" "$WORK/stages.tsv"
  echo "== $1: $2${3:+ $3}"
}

STATUS="" RC=0
stage() {  # stage NAME LIMIT LOG CMD...: CMD under a time limit, its output appended to LOG
  local name=$1 limit=$2 log=$3
  shift 3
  case ",${FASTBP_CHECK_SKIP:-}," in
    *",$name,"*)
      STATUS=skipped RC=0
      note "$name" skipped - 0 "not asked for (FASTBP_CHECK_SKIP)"
      return 0 ;;
  esac
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
  RC=$rc
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
  if [ -n "${FASTBP_SANITIZER:-}" ]; then echo "$FASTBP_SANITIZER"; return 0; fi
  if ((DRY)); then return 0; fi
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

sanitizer_refused() {  # sanitizer_refused LOG: compute-sanitizer's own error, no report
  # A tool that cannot attach (device or driver not supported, no instrumented API call) says
  # "========= Error: ..." and reports nothing; a memory error gives a nonzero ERROR SUMMARY
  # (exit 3, --error-exitcode), and a short epoch that fails on its own says its process "didn't
  # terminate successfully": both are failures, never "unavailable".
  local log=$1
  grep -Eq 'ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]' "$log" && return 1
  grep -E '^========= (Internal Sanitizer )?Error' "$log" |
    grep -Evq "didn't terminate successfully|returned an error|application returned" || return 1
  return 0
}

sanitizer_stage() {  # sanitizer_stage TOOL LIMIT SANITIZER ARGS...: one tool over the short epoch
  local tool=$1 limit=$2 sanitizer=$3
  shift 3
  local log="$WORK/sanitizer-$tool.log"
  : > "$log"
  stage "sanitizer-$tool" "$limit" "$log" "$sanitizer" --tool "$tool" --error-exitcode 3 \
    --print-limit 20 "$PY" benchmarks/gpu/short_epoch.py --no-pool "$@"
  cat "$log" >> "$OUT_DIR/sanitizer.log"
  if [ "$STATUS" = failed ] && [ "$RC" != 3 ] && sanitizer_refused "$log"; then
    local why
    why=$(grep -E '^========= (Internal Sanitizer )?Error' "$log" | head -n 1 | cut -c 11-120)
    restatus "sanitizer-$tool" unavailable "compute-sanitizer refused this device: ${why:-?}"
    SANITIZER_REFUSED=1
  fi
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
  # fastbp (its distribution ships cpu-jit from backends/numba) and every plugin in backends/
  local editables=(-e .) paths="$ROOT" d
  for d in "$ROOT"/backends/*/; do
    d=${d%/}
    paths="$paths:$d"
    if [ -f "$d/pyproject.toml" ]; then editables+=(-e "./backends/$(basename "$d")"); fi
  done
  local dry_install=()
  if ((DRY)); then dry_install=(--dry-run); fi
  stage install 120 - "$PY" -m pip install ${dry_install[@]+"${dry_install[@]}"} --no-deps \
    --no-build-isolation "${editables[@]}"
  if [ "$STATUS" != ok ] || ((DRY)); then  # (pip's dry run installs nothing)
    local pip_status=$STATUS pip_rc=$RC
    export PYTHONPATH="$paths:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    NOTE="the checkout on PYTHONPATH: ${paths//$ROOT/.}"
    stage install-fallback 30 - "$PY" benchmarks/gpu/report.py site "$WORK/site"
    if [ "$STATUS" = ok ] && [ "$pip_status" != ok ]; then
      restatus install replaced \
        "pip could not install here ($pip_status, rc $pip_rc); install-fallback replaced it"
    fi
  fi

  # CuPy compiles kernels with the CUDA headers: if it finds none, point it at some found here
  if [ -z "${CUDA_PATH:-}" ]; then
    stage cuda-headers 60 - "$PY" benchmarks/gpu/report.py headers "$WORK/cuda_path"
    if [ -s "$WORK/cuda_path" ]; then export CUDA_PATH; CUDA_PATH=$(cat "$WORK/cuda_path"); fi
  fi

  stage devices 60 - "$PY" -m fastbp devices

  # -- timing first, the target cases leading ([784,30,10] m=10, then the big network and its
  # cuBLAS bound), so a slow start cannot leave a target unmeasured ----------------------------
  local budget=150
  local sizes=()
  if ((DRY)); then
    sizes=(--n 300 --repeat 1 --cases quick --bound-reps 1 --peak-size 128)
    budget=40
  fi
  stage timing $((budget + 45)) "$OUT_DIR/timing.log" "$PY" benchmarks/speed_cuda.py \
    --budget "$budget" --out "$WORK/timing.json" ${DATA:+--data "$DATA"} ${sizes[@]+"${sizes[@]}"}

  # -- the gpu tests ---------------------------------------------------------------------------
  local marks="gpu"
  if ((DRY)); then marks="gpu and not slow"; fi
  # -c: the checkout's own settings and root conftest.py (its planner isolation), not the
  # plugin's pyproject.toml, which a run of the plugin's folder would otherwise take as its root
  stage gpu-tests 150 "$OUT_DIR/tests.log" "$PY" -m pytest -c pyproject.toml -m "$marks" -q -rs \
    -p no:cacheprovider --junitxml="$WORK/junit.xml" backends/cupy/tests/test_cupy_gpu.py \
    backends/cupy/tests/test_cupy_gpu_runs.py backends/cupy/tests/test_cupy_gpu_neurons.py

  # -- raw kernels -------------------------------------------------------------------------------
  local quick=()
  if ((DRY)); then quick=(--quick); fi
  stage kernels 60 "$OUT_DIR/kernels.log" "$PY" benchmarks/gpu/kernels_check.py \
    --out "$WORK/kernels.json" ${quick[@]+"${quick[@]}"}

  # -- chapter 6's conv net: correct against the cpu in float64, and how fast in float32 --------
  local conv_samples=2000
  if ((DRY)); then conv_samples=200; fi
  stage conv 60 "$OUT_DIR/conv.log" "$PY" benchmarks/gpu/conv_check.py \
    --samples "$conv_samples" --out "$WORK/conv.json"

  # -- the planner: graph or eager measured per configuration, in what is left less the
  # sanitizer's share ---------------------------------------------------------------------------
  local plan_args=()
  if ((DRY)); then plan_args=(--quick); fi
  local left=$((DEADLINE - RESERVE - 90 - $(date +%s)))
  if [ "$left" -gt 60 ]; then left=60; fi
  if [ "$left" -lt 15 ]; then left=15; fi
  stage plans "$left" - "$PY" benchmarks/gpu/report.py plans "$WORK/plans.json" \
    ${plan_args[@]+"${plan_args[@]}"}

  # -- compute-sanitizer -------------------------------------------------------------------------
  local sanitizer
  sanitizer=$(find_sanitizer)
  SANITIZER_REFUSED=0
  if [ -n "$sanitizer" ] && ! "$sanitizer" --version > "$WORK/sanitizer-version.log" 2>&1; then
    cat "$WORK/sanitizer-version.log" >> "$OUT_DIR/sanitizer.log"
    note sanitizer-memcheck unavailable - 0 "$sanitizer --version fails here"
    note sanitizer-racecheck unavailable - 0 "$sanitizer --version fails here"
  elif [ -n "$sanitizer" ]; then
    NOTE="$sanitizer"
    sanitizer_stage memcheck 50 "$sanitizer"
    if ((SANITIZER_REFUSED)); then
      note sanitizer-racecheck unavailable - 0 "compute-sanitizer refused this device (memcheck)"
    else
      NOTE="$sanitizer (float32: races do not depend on the dtype)"
      sanitizer_stage racecheck 50 "$sanitizer" --dtypes float32
    fi
  elif ((DRY)); then
    NOTE="dry run: the short epoch without compute-sanitizer (FASTBP_SANITIZER unset)"
    stage sanitizer-memcheck 60 "$OUT_DIR/sanitizer.log" "$PY" benchmarks/gpu/short_epoch.py \
      --no-pool
    note sanitizer-racecheck skipped - 0 "dry run"
  else
    echo "compute-sanitizer is not on this machine" >> "$OUT_DIR/sanitizer.log"
    note sanitizer-memcheck unavailable - 0 "compute-sanitizer not found on this machine"
    note sanitizer-racecheck unavailable - 0 "compute-sanitizer not found on this machine"
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
# exit 1 when a stage failed or ran out of time (every stage ran and reported regardless); a
# replaced install and an unavailable sanitizer are no failure
if awk -F'\t' '$2 == "failed" || $2 == "timeout" { bad = 1 } END { exit !bad }' \
    "$WORK/stages.tsv"; then
  exit 1
fi
exit 0
