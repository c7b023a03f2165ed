#!/bin/sh
# CPU inference: Cleave against ONNX Runtime and PyTorch, in one run, on the
# benchmark CNN, the shipped demo model and a CIFAR ResNet-18 (random weights).
# Usage: bench/infer.sh [BUILD_DIR] [ITERS]   (defaults: build, 30)
# ONNX Runtime comes from npm's onnxruntime-node, installed once with
# --ignore-scripts (which keeps the CPU library inside the package and skips
# the GPU download) into BUILD_DIR/ort. Batch 128, THREADS threads (default:
# all cores) for every engine; each prints the median images/s of ITERS
# batches after 3 warm-up batches; ratios are Cleave / the other engine.
set -eu
build=${1:-build}
iters=${2:-30}
threads=${THREADS:-$(nproc)}
batch=128
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
# Each engine picks its own CPU kernels (see bench/run.sh).
[ -n "${BENCH_KEEP_CORETYPE:-}" ] || unset OPENBLAS_CORETYPE
ort="$(cd "$build" && pwd)/ort"
if [ ! -d "$ort/node_modules/onnxruntime-node" ]; then
  mkdir -p "$ort"
  (cd "$ort" && npm install --silent --ignore-scripts --no-audit --no-fund --no-save onnxruntime-node@1.20.1)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$here/bench_infer_torch.py" export "$tmp" >/dev/null 2>&1
"$build/src/cli/cleave-cli" export --onnx "$here/../data/models/demo.safetensors" -o "$tmp/demo.onnx" >/dev/null

printf '%-16s %12s %14s %12s %10s %12s\n' model "cleave img/s" "onnxrt img/s" "vs onnxrt" "pytorch" "vs pytorch"
for m in bench demo resnet18-cifar; do
  its=$iters
  [ "$m" = resnet18-cifar ] && its=$(( iters < 10 ? iters : 10 ))
  c=$("$build/bench/bench-cnn" --model "$tmp/$m.onnx" --batch $batch --iters $its cpu)
  chw=$(echo "$c" | jq -c .input)
  o=$(BENCH_INPUT_CHW="$chw" node "$here/bench_ort.js" "$ort/node_modules" "$tmp/$m.onnx" $batch $its "$threads")
  tm=$m
  [ "$m" = demo ] && tm="$here/../data/models/demo.safetensors"
  p=$(/usr/bin/python3 "$here/bench_infer_torch.py" time "$tm" $batch $its)
  ci=$(echo "$c" | jq .infer_images_per_s)
  oi=$(echo "$o" | jq .infer_images_per_s)
  pi=$(echo "$p" | jq .infer_images_per_s)
  printf '%-16s %12.1f %14.1f %12.2f %10.1f %12.2f\n' "$m" "$ci" "$oi" "$(echo "$ci / $oi" | bc -l)" "$pi" "$(echo "$ci / $pi" | bc -l)"
done
echo "($(echo "$o" | jq -r .engine), $(echo "$p" | jq -r .engine), $threads threads, batch $batch, medians)"
