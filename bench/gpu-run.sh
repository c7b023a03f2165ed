#!/bin/bash
# gpu-run.sh: Cleave's OpenCL checks and the GPU benchmark on a machine with an
# NVIDIA GPU, from the bundle bench/gpu-bundle.sh made in .gpu/.
#
# Run from the repository root: bash bench/gpu-run.sh
# Everything goes to $OUT/gpu-log.txt (and stdout); small results to
# $OUT/summary.json, $OUT/bench.jsonl, $OUT/devices.txt and $OUT/*.tap.
#
# Every step has a timeout and the whole run keeps to GPU_RUN_BUDGET seconds
# (default 300): a step that fails or hangs is recorded and the next one runs;
# the summary is always printed and the exit status is 0 unless the bundle is
# missing. Without an NVIDIA OpenCL device it prints diagnostics (driver
# folder, ICD files, ldconfig, mounts) and still benchmarks PyTorch and
# Cleave's cpu.
#
# Knobs (environment):
#   GPU_RUN_ALLOW_ANY=1   use any OpenCL device when there is no NVIDIA one
#                         (dry runs on pocl); the system's ICD vendors are kept
#   GPU_RUN_BUDGET=300    seconds for the whole run
#   GPU_RUN_BATCH=128 GPU_RUN_ITERS=30   benchmark batch and timed iterations
#   GPU_RUN_BIG_BATCH=1024  a second, larger batch for both engines (0: skip)
#   GPU_RUN_TORCH_DEVICE=cuda  PyTorch's device (cpu for dry runs)
#   GPU_RUN_TEST_ARGS     extra arguments for test-opencl (e.g. "-p /opencl/conv2d")
#   GPU_RUN_NET=1         also run test-net's OpenCL cases (0: skip)
#   GPU_RUN_OPENCL_LIB    the OpenCL driver library to use instead of searching
#                         for libnvidia-opencl.so.1 (testing)
#   GPU_RUN_BUNDLED_GLIBC=1  start the programs with the bundled glibc (testing)
#   GPU_RUN_DIR           where the bundle is unpacked (default a fresh /tmp dir)
#   PYTHON                the Python that has PyTorch (default python3)

T0=$(date +%s)
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
BUDGET=${GPU_RUN_BUDGET:-300}
BATCH=${GPU_RUN_BATCH:-128}
ITERS=${GPU_RUN_ITERS:-30}
BIG=${GPU_RUN_BIG_BATCH:-1024}
TORCH_DEV=${GPU_RUN_TORCH_DEVICE:-cuda}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-run-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-log.txt
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
STEPS=$OUT/.steps
: > "$STEPS"

say() { printf '\n=== [%3ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# left SECONDS_WANTED: what a step may use, keeping 15 s for the summary.
left() {
  local rest=$(( BUDGET - ($(date +%s) - T0) - 15 ))
  (( rest > $1 )) && rest=$1
  echo "$rest"
}

# step NAME LIMIT CMD...: run CMD with a timeout, record rc and seconds.
step() {
  local name=$1 lim t s rc
  lim=$(left "$2")
  shift 2
  if (( lim < 5 )); then
    say "$name: skipped, out of time"
    echo "$name skipped 0" >> "$STEPS"
    return 124
  fi
  say "$name (limit ${lim}s): $*"
  s=$(date +%s)
  timeout -k 5 "$lim" "$@"
  rc=$?
  t=$(( $(date +%s) - s ))
  (( rc == 124 || rc == 137 )) && echo "!!! $name timed out after ${t}s"
  echo "$name $rc $t" >> "$STEPS"
  echo "--- $name: rc=$rc, ${t}s"
  return $rc
}

summary() {
  say "summary"
  "$PY" - "$STEPS" "$OUT" "$DEVICE_ID" "$DEVICE_LINE" <<'PY' || cat "$STEPS"
import json, os, re, sys
steps_file, out, dev_id, dev_line = sys.argv[1:5]
steps = []
for line in open(steps_file):
    name, rc, secs = line.split()
    steps.append({"step": name, "rc": None if rc == "skipped" else int(rc), "seconds": int(secs),
                  "status": "skipped" if rc == "skipped" else "timeout" if rc in ("124", "137")
                  else "ok" if rc == "0" else "failed"})
taps = {}
for f in sorted(os.listdir(out)):
    if f.endswith(".tap") and os.path.getsize(os.path.join(out, f)) > 0:
        ok = bad = skip = 0
        fails = []
        for l in open(os.path.join(out, f), errors="replace"):
            if re.match(r"ok \d+", l):
                if "# SKIP" in l:
                    skip += 1
                else:
                    ok += 1
            elif re.match(r"not ok \d+", l):
                bad += 1
                fails.append(l.strip())
        plan = None
        for l in open(os.path.join(out, f), errors="replace"):
            m = re.match(r"1\.\.(\d+)", l)
            if m:
                plan = int(m.group(1))
        taps[f] = {"pass": ok, "fail": bad, "skip": skip, "planned": plan, "failures": fails[:20]}
rows = []
bp = os.path.join(out, "bench.jsonl")
if os.path.exists(bp):
    for l in open(bp):
        try:
            rows.append(json.loads(l))
        except ValueError:
            pass
print(f"device under test: {dev_id or 'none'}  {dev_line}")
for s in steps:
    print(f"  {s['step']:28s} {s['status']:8s} rc={s['rc']} {s['seconds']:4d}s")
for f, t in taps.items():
    print(f"  {f:28s} pass {t['pass']} fail {t['fail']} skip {t['skip']} of {t['planned']}")
    for x in t["failures"]:
        print("     ", x)
ratios = []
def find(tag, batch):
    return [r for r in rows if r.get("tag") == tag and r.get("batch") == batch]
batches = sorted({r.get("batch") for r in rows if r.get("batch")})
for b in batches:
    g, c, t, t32 = find("cleave-gpu", b), find("cleave-cpu", b), find("torch", b), find("torch-fp32", b)
    print(f"batch {b}: images/s           train      infer")
    for name, r in (("cleave opencl", g), ("cleave cpu", c), ("pytorch (default tf32)", t), ("pytorch (fp32)", t32)):
        if r:
            print(f"  {name:24s} {r[0]['train_images_per_s']:10.1f} {r[0]['infer_images_per_s']:10.1f}")
    def ratio(a, bb, label):
        if a and bb:
            tr = a[0]["train_images_per_s"] / bb[0]["train_images_per_s"]
            inf = a[0]["infer_images_per_s"] / bb[0]["infer_images_per_s"]
            print(f"  ratio {label:34s} train {tr:6.3f}  infer {inf:6.3f}")
            ratios.append({"batch": b, "ratio": label, "train": round(tr, 4), "infer": round(inf, 4)})
    ratio(g, t, "cleave-opencl / pytorch")
    ratio(g, t32, "cleave-opencl / pytorch-fp32")
    ratio(g, c, "cleave-opencl / cleave-cpu")
json.dump({"device": dev_id, "device_line": dev_line, "steps": steps, "tests": taps,
           "bench": rows, "ratios": ratios}, open(os.path.join(out, "summary.json"), "w"), indent=1)
PY
  rm -f "$STEPS"
  say "done"
  # let tee write the log's end before the caller collects $OUT
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null
}

# tag_json TAG: add "tag" to each JSON line on stdin, append to bench.jsonl.
tag_json() {
  "$PY" -c '
import json, sys
for l in sys.stdin:
    l = l.strip()
    if l.startswith("{"):
        try:
            r = json.loads(l)
        except ValueError:
            print(l); continue
        r["tag"] = sys.argv[1]
        print(json.dumps(r))
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps(r) + "\n")
    elif l:
        print(l)
' "$1" "$OUT/bench.jsonl"
}

DEVICE_ID=""
DEVICE_LINE=""

say "host"
echo "date $(date -u +%FT%TZ), $(uname -srm), $(nproc) CPUs, user $(id -un 2>/dev/null || id -u)"
getconf GNU_LIBC_VERSION 2>/dev/null
grep -m1 'model name' /proc/cpuinfo
grep -o -m1 -w 'avx512f' /proc/cpuinfo >/dev/null && echo "cpu has avx512f"
[ -r .gpu/MANIFEST ] && head -3 .gpu/MANIFEST

if [ ! -r .gpu/payload.tar.gz ]; then
  echo "no .gpu/payload.tar.gz: run bench/gpu-bundle.sh here first and carry .gpu"
  summary
  exit 1
fi
W=${GPU_RUN_DIR:-$(mktemp -d /tmp/cleave-gpu.XXXXXX)}
mkdir -p "$W" && tar -C "$W" -xzf .gpu/payload.tar.gz || { echo "cannot unpack the bundle"; summary; exit 1; }
export XDG_CACHE_HOME=$W/cache HOME=${HOME:-$W}
mkdir -p "$XDG_CACHE_HOME"

say "nvidia-smi"
if command -v nvidia-smi >/dev/null; then
  timeout -k 2 20 nvidia-smi -L
  timeout -k 2 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
else
  echo "no nvidia-smi on PATH"; ls /usr/local/nvidia/bin 2>/dev/null
fi

# The NVIDIA OpenCL driver: libnvidia-opencl.so.1, found where the driver is
# mounted or installed; libcuda.so.1 (which it loads) is usually beside it.
say "NVIDIA OpenCL library"
NVCL=${GPU_RUN_OPENCL_LIB:-}
[ -n "$NVCL" ] || for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib \
         /usr/local/cuda/compat /usr/local/cuda/lib64; do
  for f in "$d"/libnvidia-opencl.so.1 "$d"/libnvidia-opencl.so.[0-9]*; do
    [ -e "$f" ] && { NVCL=$f; break 2; }
  done
done
if [ -z "$NVCL" ]; then
  NVCL=$("$LDCONFIG" -p 2>/dev/null | awk '/libnvidia-opencl\.so/ { print $NF; exit }')
fi
if [ -z "$NVCL" ]; then
  # -xdev keeps find off /proc and friends; the driver is often its own mount.
  mounts=$(awk '$2 ~ /nvidia|cuda|driver/ { print $2 }' /proc/mounts 2>/dev/null)
  NVCL=$(timeout -k 2 30 find / $mounts -xdev -name 'libnvidia-opencl.so*' 2>/dev/null | sort | head -1)
fi
NVLIBS=""
if [ -n "$NVCL" ]; then
  echo "found $NVCL"
  NVLIBS=$(dirname "$NVCL")
  CUDA1=$(ls "$NVLIBS"/libcuda.so.1 2>/dev/null || "$LDCONFIG" -p 2>/dev/null | awk '/libcuda\.so\.1/ { print $NF; exit }')
  echo "libcuda.so.1: ${CUDA1:-not found}"
  [ -n "$CUDA1" ] && [ "$(dirname "$CUDA1")" != "$NVLIBS" ] && NVLIBS=$NVLIBS:$(dirname "$CUDA1")
  VENDORS=$W/vendors
  mkdir -p "$VENDORS"
  echo "$NVCL" > "$VENDORS/nvidia.icd"
  export OCL_ICD_VENDORS=$VENDORS
  echo "OCL_ICD_VENDORS=$OCL_ICD_VENDORS ($(cat "$VENDORS/nvidia.icd"))"
elif [ -n "${GPU_RUN_ALLOW_ANY:-}" ]; then
  echo "no libnvidia-opencl; GPU_RUN_ALLOW_ANY: keeping the system's ICD vendors ($(ls /etc/OpenCL/vendors 2>/dev/null | tr '\n' ' '))"
else
  echo "no libnvidia-opencl.so found"
fi

# How the bundled programs are started: the target's glibc when it is new
# enough, else the bundled loader and glibc (then OpenBLAS's re-exec for
# AVX-512 kernels cannot work: /proc/self/exe is the loader).
LIBPATH=$W/lib${NVLIBS:+:$NVLIBS}
RUN=(env LD_LIBRARY_PATH="$LIBPATH")
if [ -n "${GPU_RUN_BUNDLED_GLIBC:-}" ] || ! "${RUN[@]}" "$W/bin/cleave-cli" --version; then
  echo "starting the bundled programs with the bundled glibc"
  RUN=(env CLEAVE_KEEP_BLAS_KERNELS=1 "$W/glibc/ld-linux-x86-64.so.2" --library-path "$W/lib:$W/glibc${NVLIBS:+:$NVLIBS}")
  if ! "${RUN[@]}" "$W/bin/cleave-cli" --version; then
    echo "bundled programs do not start at all"
    LD_LIBRARY_PATH=$W/lib ldd "$W/bin/cleave-cli"
    summary
    exit 0
  fi
fi

say "OpenCL platforms and devices"
if [ -x "$W/bin/clinfo" ]; then
  step clinfo-list 30 "${RUN[@]}" "$W/bin/clinfo" -l
fi
step cleave-devices 60 "${RUN[@]}" "$W/bin/cleave-cli" devices | tee "$OUT/devices.txt"
# Lines look like "1   opencl:0:0   gpu    132  1980  139.8G  NVIDIA H200 (NVIDIA CUDA)".
pick() { grep -E '^[0-9]+ +opencl:[0-9]+:[0-9]+ ' "$OUT/devices.txt" | grep -E "$1" | head -1; }
DEVICE_LINE=$(pick 'NVIDIA')
[ -z "$DEVICE_LINE" ] && [ -n "${GPU_RUN_ALLOW_ANY:-}" ] && DEVICE_LINE=$(pick ' gpu ')
[ -z "$DEVICE_LINE" ] && [ -n "${GPU_RUN_ALLOW_ANY:-}" ] && DEVICE_LINE=$(pick '.')
DEVICE_ID=$(awk '{ print $2 }' <<< "$DEVICE_LINE")

if [ -z "$DEVICE_ID" ]; then
  say "no NVIDIA OpenCL device: diagnostics"
  echo "--- ls -la /usr/local/nvidia /usr/local/nvidia/lib64"
  ls -la /usr/local/nvidia /usr/local/nvidia/lib64 2>&1 | head -80
  echo "--- /etc/OpenCL/vendors"
  ls -la /etc/OpenCL/vendors 2>&1
  for f in /etc/OpenCL/vendors/*; do [ -f "$f" ] && echo "$f: $(head -c 300 "$f")"; done
  echo "--- ldconfig -p | grep -i -e opencl -e libcuda"
  "$LDCONFIG" -p 2>/dev/null | grep -i -e opencl -e 'libcuda\.'
  echo "--- mounts"
  grep -i -e nvidia -e cuda /proc/mounts
  if [ -n "$NVCL" ]; then
    echo "--- ldd $NVCL"
    ldd "$NVCL" 2>&1
    if [ -x "$W/bin/clinfo" ]; then
      echo "--- the ICD loader's view (OCL_ICD_DEBUG=15)"
      OCL_ICD_DEBUG=15 timeout -k 2 30 "${RUN[@]}" "$W/bin/clinfo" -l 2>&1 | tail -40
      echo "--- clinfo"
      timeout -k 2 30 "${RUN[@]}" "$W/bin/clinfo" 2>&1 | head -60
    fi
  fi
  echo "(no OpenCL device under test: only PyTorch and Cleave's cpu are benchmarked)"
else
  P_D=${DEVICE_ID#opencl:}
  echo "device under test: $DEVICE_ID ($DEVICE_LINE)"

  # (a) test-opencl: every op against the cpu backend. One run covers both
  # GEMM kernels: the test opens a second backend forced to the other flavour
  # (CLEAVE_OPENCL_GEMM: strip on a GPU, where tiled is the default). -m perf
  # adds the timed conv case.
  step test-opencl 150 env CLEAVE_TEST_OPENCL_DEVICE="$P_D" "${RUN[@]}" "$W/bin/test-opencl" --tap -m perf \
    ${GPU_RUN_TEST_ARGS:-} > "$OUT/test-opencl.tap" 2>&1
  cat "$OUT/test-opencl.tap"
fi

# (b) the benchmark CNN: Cleave on the GPU, PyTorch on CUDA, Cleave's cpu.
bench_all() {
  local b=$1 it=$2 sfx=$3
  if [ -n "$DEVICE_ID" ]; then
    step "bench-cnn-opencl$sfx" 60 "${RUN[@]}" "$W/bin/bench-cnn" --batch "$b" --iters "$it" "$DEVICE_ID" | tag_json cleave-gpu
  fi
  step "torch-$TORCH_DEV$sfx" 90 env PYTHONUNBUFFERED=1 "$PY" bench/bench_torch.py "$b" "$it" --device "$TORCH_DEV" | tag_json torch
  step "torch-$TORCH_DEV-fp32$sfx" 60 env PYTHONUNBUFFERED=1 "$PY" bench/bench_torch.py "$b" "$it" --device "$TORCH_DEV" --no-tf32 | tag_json torch-fp32
}
bench_all "$BATCH" "$ITERS" ""

if [ -n "$DEVICE_ID" ] && [ "${GPU_RUN_NET:-1}" != 0 ]; then
  # GLib's -p does not take /core/net/opencl itself (nested suites), so one per net
  step test-net-opencl 45 env G_TEST_SRCDIR="$ROOT/tests" "${RUN[@]}" "$W/bin/test-net" --tap \
    -p /core/net/opencl/plain -p /core/net/opencl/res -p /core/net/opencl/cat > "$OUT/test-net.tap" 2>&1
  cat "$OUT/test-net.tap"
fi

step bench-cnn-cpu 60 "${RUN[@]}" "$W/bin/bench-cnn" --batch "$BATCH" --iters "$(( ITERS < 10 ? ITERS : 10 ))" cpu | tag_json cleave-cpu

if [ "$BIG" != 0 ] && [ "$BIG" != "$BATCH" ]; then
  bench_all "$BIG" "$(( ITERS < 10 ? ITERS : 10 ))" "-b$BIG"
fi

summary
exit 0
