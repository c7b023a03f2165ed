#!/bin/bash
# gpu-bundle.sh: build Cleave's OpenCL test and benchmark programs and pack
# them, with every shared library they load except glibc's, into .gpu/, so
# that bench/gpu-run.sh can run them on a machine that has an NVIDIA GPU but
# no GLib, json-glib, OpenBLAS or OpenCL ICD loader (the device machine).
#
# Usage: bench/gpu-bundle.sh [BUILD_DIR]     (default build-gpu; run from anywhere)
# Then carry .gpu (ignored through .git/info/exclude) and run bench/gpu-run.sh.
#
# The payload is one gzip'd tarball: OpenBLAS alone is 35 MB unpacked and the
# carried tree is limited to 64 MiB. It holds
#   bin/   test-opencl, test-net, bench-cnn, cleave-cli, clinfo (when installed here)
#   lib/   the programs' non-glibc libraries and ocl-icd's libOpenCL.so.1
#   glibc/ this machine's loader and libc, used only when the target's glibc
#          is too old to run bin/ (see gpu-run.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-gpu}
case $build in /*) ;; *) build=$root/$build ;; esac
cd "$root"

if [ ! -f "$build/build.ninja" ]; then
  nice meson setup "$build" -Dgui=false -Dopencl=enabled --buildtype=release
fi
nice ninja -C "$build" tests/test-opencl tests/test-net bench/bench-cnn src/cli/cleave-cli
grep -q '^#define HAVE_OPENCL 1' "$build/config.h" || { echo "gpu-bundle: $build has no OpenCL" >&2; exit 1; }

grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/glibc"
progs=("$build/tests/test-opencl" "$build/tests/test-net" "$build/bench/bench-cnn" "$build/src/cli/cleave-cli")
command -v clinfo >/dev/null && progs+=("$(command -v clinfo)")
for p in "${progs[@]}"; do
  cp "$p" "$stage/bin/"
done
strip "$stage/bin/test-opencl" "$stage/bin/test-net" "$stage/bin/bench-cnn" "$stage/bin/cleave-cli"

# glibc's own libraries (and libgcc_s, which every system has, at least as new)
# stay with the target's (mixing a newer libc with the target's loader
# breaks); everything else travels. libOpenCL.so.1 comes
# from ldd like the rest: it is the ICD loader, not a driver.
is_glibc() {
  case $1 in
    linux-vdso.so.*|ld-linux*|libgcc_s.so.*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libutil.so.*|libmvec.so.*) return 0 ;;
  esac
  return 1
}
ldd "${progs[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
  while read -r soname path; do
    if is_glibc "$soname"; then
      continue
    fi
    # by soname, resolving the alternatives symlinks (openblas-pthread)
    cp -L "$path" "$stage/lib/$soname"
  done
if ldd "${progs[@]}" | grep -q 'not found'; then
  echo "gpu-bundle: unresolved libraries:" >&2
  ldd "${progs[@]}" | grep 'not found' >&2
  exit 1
fi
# Fallback glibc, for a target older than this machine (Debian 12, glibc 2.36).
for f in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/{libc.so.6,libm.so.6,libpthread.so.0,libdl.so.2,librt.so.1,libresolv.so.2,libmvec.so.1,libgcc_s.so.1}; do
  [ -e "$f" ] && cp -L "$f" "$stage/glibc/"
done

{
  echo "built $(date -u +%FT%TZ) on $(uname -srm), $(ldd --version | head -1)"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src tests bench || echo ' + uncommitted changes')"
  echo "build dir $build: $(meson introspect --buildoptions "$build" 2>/dev/null |
    python3 -c 'import json,sys; o={x["name"]:x["value"] for x in json.load(sys.stdin)}; print("buildtype", o.get("buildtype"), "opencl", o.get("opencl"))' 2>/dev/null || echo '?')"
  (cd "$stage" && find . -type f -printf '%10s %p\n' | sort -k2)
} > "$stage/MANIFEST"

rm -rf .gpu
mkdir -p .gpu
tar -C "$stage" -czf .gpu/payload.tar.gz .
cp "$stage/MANIFEST" .gpu/MANIFEST
cp bench/gpu-run.sh .gpu/gpu-run.sh
echo "gpu-bundle: .gpu is $(du -sh .gpu | cut -f1) ($(du -sh "$stage" | cut -f1) unpacked)"
echo "gpu-bundle: run it with: bash bench/gpu-run.sh   (carry [\".gpu\"])"
