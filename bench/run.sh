#!/bin/sh
# Benchmark: Cleave (each backend) against PyTorch on the same machine, in one run.
# Usage: bench/run.sh [BUILD_DIR] [DEVICE…]   (defaults: build, cpu and opencl when present)
# Prints images/s for training and inference, the ratio Cleave/PyTorch and
# GFLOP/s as a fraction of the machine's fp32 peak (PEAK_GFLOPS, default
# 78 GFLOP/s per core × the thread count, measured for this project's machines).
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
devices=${*:-"cpu opencl"}
threads=${THREADS:-$(nproc)}
peak=${PEAK_GFLOPS:-$(echo "78 * $threads" | bc)}
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
# Both engines pick their kernels for the CPU themselves (PyTorch's oneDNN
# and Cleave's OpenBLAS use AVX-512 where present); a machine-wide
# OPENBLAS_CORETYPE (this project's machines set Haswell) would hold
# OpenBLAS, hence Cleave, to AVX2. BENCH_KEEP_CORETYPE=1 keeps it.
[ -n "${BENCH_KEEP_CORETYPE:-}" ] || unset OPENBLAS_CORETYPE
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$here/bench_torch.py" 128 30 > "$tmp/torch.json"
"$build/bench/bench-cnn" --batch 128 --iters 30 $devices > "$tmp/cleave.json" || true
/usr/bin/python3 - "$tmp/torch.json" "$tmp/cleave.json" "$peak" <<'PY'
import json, sys
torch = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
peak = float(sys.argv[3])
flops = 38.45e6  # forward FLOPs per image of the benchmark CNN (cleave-cli info)
def gf(ips, mult): return ips * flops * mult / 1e9
print(f"benchmark CNN, batch {torch['batch']}, median of {torch['iters']} batches, {torch['threads']} threads, peak {peak:.0f} GFLOP/s")
print(f"{'engine':44s} {'train img/s':>11s} {'ratio':>6s} {'%peak':>6s} {'infer img/s':>11s} {'ratio':>6s} {'%peak':>6s}")
def line(name, r):
    tr, inf = r['train_images_per_s'], r['infer_images_per_s']
    print(f"{name[:44]:44s} {tr:11.1f} {tr / torch['train_images_per_s']:6.2f} {100 * gf(tr, 3) / peak:5.1f}% "
          f"{inf:11.1f} {inf / torch['infer_images_per_s']:6.2f} {100 * gf(inf, 1) / peak:5.1f}%")
line(torch['engine'], torch)
for r in rows:
    line('cleave ' + r['device'], r)
PY
