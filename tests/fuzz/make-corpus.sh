#!/bin/sh
# make-corpus.sh [BUILDDIR]: rewrites the seed corpus in tests/fuzz/corpus
# from Cleave's own writers (make-corpus.c) plus the ONNX reference models
# of tests/reference/onnx. Files named regress-* (inputs that once crashed
# a reader, kept as regression tests) are left alone. BUILDDIR (default:
# build) is a configured meson build of this tree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
ninja -C "$build" tests/fuzz/make-corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/tests/fuzz/make-corpus" "$tmp"
cp "$root"/tests/reference/onnx/*.onnx "$tmp/fuzz-onnx/"
find "$here/corpus" -type f ! -name 'regress-*' -delete 2>/dev/null || true
mkdir -p "$here/corpus"
cp -R "$tmp"/. "$here/corpus/"
chmod -R a+rX "$here/corpus"
du -sh "$here/corpus"
