#!/bin/sh
# run.sh [-k] [SECONDS] [HARNESS...]: builds the libFuzzer harnesses with
# clang in build-fuzz/ (once) and runs each for SECONDS (default 20) on a
# copy of its seed corpus with its dictionary. HARNESS is e.g. fuzz-onnx;
# default: all. -k keeps going after a finding (libFuzzer's fork mode
# ignoring crashes, timeouts and out-of-memory), to survey a harness.
# Writes build-fuzz/fuzz/<harness>/{corpus,artifacts,log}; prints one line
# per harness (executions, coverage, findings) and exits 1 if any harness
# found something. Environment: BUILD (default build-fuzz), CC (clang).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
keep_going=0
if [ "${1:-}" = "-k" ]; then keep_going=1; shift; fi
secs=${1:-20}
[ $# -gt 0 ] && shift
all="fuzz-model fuzz-graph-json fuzz-module-set fuzz-composition fuzz-patched fuzz-onnx fuzz-idx fuzz-cifar fuzz-image"
# the PyTorch checkpoint reader's, once its source is in the tree
[ -f "$here/fuzz-pth.c" ] && all="$all fuzz-pth"
harnesses=${*:-$all}
build=${BUILD:-build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
  CC=${CC:-clang} meson setup "$build" -Dfuzzing=true -Dgui=false -Dopencl=disabled -Db_lundef=false \
    -Dbuildtype=debugoptimized >/dev/null
fi
targets=""
for h in $harnesses; do targets="$targets tests/fuzz/$h"; done
ninja -C "$build" $targets >/dev/null

dict_of() {
  case "$1" in
    fuzz-model|fuzz-module-set|fuzz-composition|fuzz-patched) echo safetensors ;;
    *) echo "${1#fuzz-}" ;;
  esac
}

status=0
for h in $harnesses; do
  out="$build/fuzz/$h"
  rm -rf "$out/artifacts" "$out/tmp"
  mkdir -p "$out/corpus" "$out/artifacts" "$out/tmp"
  cp "$here/corpus/${h#fuzz-}"/* "$out/corpus/"
  set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/"
  dict="$here/dict/$(dict_of "$h").dict"
  [ -f "$dict" ] && set -- "$@" -dict="$dict"
  if [ $keep_going = 1 ]; then
    set -- "$@" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1
  fi
  rc=0
  TMPDIR="$out/tmp" ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
    timeout $((secs + 120)) "$build/tests/fuzz/$h" "$@" "$out/corpus" >"$out/log" 2>&1 || rc=$?
  # the last status line: "#N DONE cov: C ft: F corp: K/..." (fork mode: "#N: cov: C ft: F corp: K ...")
  stats=$(grep -E '^#[0-9]+:?[[:space:]].*cov: ' "$out/log" | tail -1 |
    awk '{ for (i = 1; i < NF; i++) { if ($i == "cov:") c = $(i+1); if ($i == "ft:") f = $(i+1); if ($i == "corp:") k = $(i+1) }
           n = $1; gsub(/[#:]/, "", n); printf "%s execs, cov %s, ft %s, corpus %s", n, c, f, k }')
  findings=$(ls "$out/artifacts" | wc -l)
  echo "$h: ${stats:-no stats} (${secs} s; $findings finding(s) in $out/artifacts; rc $rc; log $out/log)"
  if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then status=1; fi
  rm -rf "$out/tmp"
done
exit $status
