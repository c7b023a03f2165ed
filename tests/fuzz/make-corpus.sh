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
cp "$root"/tests/reference/onnx/*.onnx "$tmp/onnx/"
# only the folders written here (corpus/pth has its own seeds)
for d in "$tmp"/*/; do
  name=$(basename "$d")
  mkdir -p "$here/corpus/$name"
  find "$here/corpus/$name" -type f ! -name 'regress-*' -delete
  cp "$d"* "$here/corpus/$name/"
done
chmod -R a+rX "$here/corpus"
du -sh "$here/corpus"
