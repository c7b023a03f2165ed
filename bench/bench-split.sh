#!/bin/sh
# bench-split.sh: images/s through the GradSplitter search, Cleave vs PyTorch,
# same model, same data, same schedule and options, one after the other on
# this machine with two threads each.
#
#   bench/bench-split.sh MODEL [DATASET_DIR] [search options, e.g. --rounds 1 --train-images 512]
#
# Both sides get one explicit option list: the defaults below, then yours
# (the last occurrence of an option wins on both sides), so neither side's
# built-in defaults matter. Images/s is counted as cleave-cli split counts
# it: each epoch's training images once (the cached --head-passes add
# none), over the wall time of the whole search. Cleave's wall time also
# covers its epoch selection, module extraction and the modules' own
# validation pass, which the PyTorch side does not do. The head refit after
# the search (not part of it, and not on the PyTorch side) is off:
# --refit-images 0.
#
# Environment: CLEAVE_CLI (default build/src/cli/cleave-cli), PYTHON (default
# /usr/bin/python3, needs torch), THREADS (default 2).
set -eu
model=${1:?usage: bench-split.sh MODEL [DATASET_DIR] [options]}
shift
data=/usr/share/datasets/fashion-mnist
if [ $# -gt 0 ] && [ -d "$1" ]; then data=$1; shift; fi
cli=${CLEAVE_CLI:-build/src/cli/cleave-cli}
py=${PYTHON:-/usr/bin/python3}
here=$(dirname "$0")
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
# cleave-cli split keeps freed scratch memory in the process (mallopt); give
# PyTorch the same glibc setting so neither side pays page faults the other avoids.
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=536870912
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

set -- --seed 0 --val 0.2 --val-images 2000 --train-images 1536 --batch 64 \
  --head-epochs 1 --rounds 9 --mask-epochs 2 --head-only-epochs 1 --head-passes 10 \
  --alpha 0.1 --alpha-growth 1.5 --lr-mask 0.01 --lr-head 0.002 --lr-head-joint 0.0005 \
  --theta-init 0.2 --loss logits --mask-optimizer adam --refit-images 0 "$@"

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $threads threads each"
echo "== options: $*"
echo "== pytorch ($("$py" -c 'import torch; print(torch.__version__)'))"
"$py" "$here/bench-split.py" "$model" --data "$data" --threads "$threads" "$@" | tee "$tmp/py.txt"
echo "== cleave"
"$cli" split --method grad "$model" "$data" -o "$tmp/modules.safetensors" --no-test "$@" 2>"$tmp/cleave.err" | tee "$tmp/cleave.txt"
grep -E '^ *(heads|masks) [0-9]+/' "$tmp/cleave.err" | sed 's/^/   /' || true

py_ips=$(sed -n 's/.* \([0-9.]*\) images\/s$/\1/p' "$tmp/py.txt" | tail -1)
cl_ips=$(sed -n 's/.*, \([0-9.]*\) images\/s$/\1/p' "$tmp/cleave.txt" | tail -1)
echo "== images/s through the search: cleave $cl_ips, pytorch $py_ips, ratio $(echo "$cl_ips $py_ips" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }')×"
