#!/usr/bin/env bash
# Prepares what must travel with the checkout to a GPU machine for benchmarks/gpu/check.sh, and
# says how to send it:
#
#   bash benchmarks/gpu/prepare.sh
#
# MNIST's four files go into the ignored folder .gpu-data/ of this checkout, copied from the
# first folder that has all four: $FASTBP_DATA, fastbp's cache ($XDG_CACHE_HOME/fastbp/mnist or
# ~/.cache/fastbp/mnist), ../shared/data/mnist beside the checkout. Nothing is downloaded.
# Then it prints the paths to send (the checkout's tracked and untracked files, and the ignored
# paths listed), the command to run there and its time limit. Exits 1 when no MNIST was found
# (the check then times on random data of MNIST's shape).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
DEST="$ROOT/.gpu-data"
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
t10k-labels-idx1-ubyte.gz"
# The ignored paths the check needs on the GPU machine (each one as given to the transfer).
SEND=".gpu-data"
# The command's wall-clock limit: the check's own budget (FASTBP_CHECK_SECONDS, 500 s) and the
# kill grace of its stages.
LIMIT=560

complete() {  # complete DIR: whether DIR holds all four files
  local f
  for f in $FILES; do [ -s "$1/$f" ] || return 1; done
  return 0
}

cache="${XDG_CACHE_HOME:-$HOME/.cache}/fastbp/mnist"
source=""
for d in "${FASTBP_DATA:-}" "$cache" "$ROOT/../shared/data/mnist"; do
  if [ -n "$d" ] && [ -d "$d" ] && complete "$d"; then
    source=$(cd "$d" && pwd)
    break
  fi
done

if [ -n "$source" ] && [ "$source" != "$DEST" ]; then
  mkdir -p "$DEST"
  for f in $FILES; do cp -p "$source/$f" "$DEST/$f" || exit 2; done
  echo "MNIST copied from $source into .gpu-data/"
elif complete "$DEST"; then
  echo "MNIST already in .gpu-data/"
else
  echo "prepare.sh: no folder with MNIST's four files (FASTBP_DATA, $cache, ../shared/data/mnist);" \
    "the check will time on random data" >&2
  exit 1
fi

if ! git -C "$ROOT" check-ignore -q .gpu-data/; then
  echo "prepare.sh: .gpu-data/ is not ignored by git here; add it to .gitignore" >&2
  exit 2
fi
cat <<EOF

Send the checkout with these ignored paths: $SEND
On the GPU machine, from the checkout, with a limit of $LIMIT s:
  bash benchmarks/gpu/check.sh "\$OUT"
EOF
