#!/bin/sh
# The full-size torchvision families against PyTorch (test-onnx's
# /core/onnx/import/torchvision-families-full): generates them once into the
# build directory with tests/reference/make_torchvision_onnx.py --full when
# /usr/bin/python3 has torchvision (about 2 GB, several minutes), then runs
# that test case. Skips (exit 77) without torchvision.
#   run-families.sh TEST_ONNX SOURCE_DIR OUT_DIR
set -eu
test_onnx=$1 src=$2 out=$3
if ! /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
  echo "1..0 # SKIP /usr/bin/python3 has no torchvision"
  exit 0
fi
if [ ! -f "$out/families.json" ]; then
  mkdir -p "$out"
  /usr/bin/python3 "$src/tests/reference/make_torchvision_onnx.py" --full "$out" >&2
fi
CLEAVE_FAMILIES_DIR=$out exec "$test_onnx" --tap -p /core/onnx/import/torchvision-families-full
