#!/bin/sh
# dev.sh: the one entry point for setting up, building, running and testing Cleave
# on a Debian 12 machine (run as root, or with sudo available for apt-get).
#
#   ./dev.sh demo    install dependencies, build, run the main job on the demo model
#   ./dev.sh test    install dependencies, build with ASan+UBSan, run the whole test suite
#   ./dev.sh deps    only install the Debian packages
#   ./dev.sh build   only build (build/)
#   ./dev.sh bench   benchmark against PyTorch and ONNX Runtime (bench/run.sh, bench/infer.sh)
#   ./dev.sh packages build|test   print a package list (tests/check-packages.py checks them)
#   ./dev.sh fuzz [-k] [SECONDS] [HARNESS...]   run the libFuzzer harnesses (tests/fuzz/run.sh)
set -eu
cd "$(dirname "$0")"

# What building and running needs (meson's post-install step looks up
# update-desktop-database and update-mime-database at configure time, hence
# desktop-file-utils and shared-mime-info); tests
# and benchmarks add PyTorch (the numerical and speed reference), ONNX's
# checker, Xvfb and the validators, strace (the installed programs must not
# read the source tree; tests/hostile kills commands through it), PIL (the
# hostile-input corpus writes its PNG and JPEG files with it) and what building
# the Debian package needs (git: the package test copies the tracked files).
# tests/check-packages.py proves both lists
# complete: a test fails, naming the package, when something is missing.
PACKAGES="build-essential meson ninja-build pkg-config gettext desktop-file-utils shared-mime-info
  libglib2.0-dev libjson-glib-dev libgdk-pixbuf-2.0-dev libcairo2-dev libopenblas-dev
  libgtk-4-dev libadwaita-1-dev
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  dataset-fashion-mnist"
TEST_PACKAGES="python3-torch python3-numpy python3-onnx python3-pil
  xvfb xauth x11-utils dbus-daemon appstream libglib2.0-bin jq bc locales strace
  dpkg-dev debhelper lintian git libxml2-utils"
# The inference benchmark adds ONNX Runtime from npm (bench/infer.sh); node
# and npm are one package where nodejs comes from NodeSource.
BENCH_PACKAGES="nodejs"
FUZZ_PACKAGES="clang"

deps() {
  missing=""
  for p in $PACKAGES ${WITH_TESTS:+$TEST_PACKAGES} ${WITH_BENCH:+$BENCH_PACKAGES} ${WITH_FUZZ:+$FUZZ_PACKAGES}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
}

build() {
  dir=$1; shift
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@"
  ninja -C "$dir"
}

# A pocl kernel cache inside the build tree keeps OpenCL compiles warm between runs.
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-$PWD/build/pocl-cache}"

case "${1:-}" in
  deps)
    deps ;;
  build)
    deps
    build build ;;
  demo)
    deps
    build build
    ./build/src/cli/cleave-cli demo ;;
  test)
    WITH_TESTS=1 deps
    # A locale that writes 0,5: the tests check that files stay the same JSON under it.
    locale -a 2>/dev/null | grep -qix 'de_DE.utf8' ||
      { [ "$(id -u)" -eq 0 ] && localedef -i de_DE -f UTF-8 de_DE.UTF-8 || sudo localedef -i de_DE -f UTF-8 de_DE.UTF-8; } ||
      echo "(no de_DE locale: the locale test will be skipped)"
    export POCL_CACHE_DIR="$PWD/build-test/pocl-cache"
    build build-test -Db_sanitize=address,undefined -Db_lundef=false
    # tests/install/test-deb.sh builds, installs and purges the .deb (root only).
    [ "$(id -u)" -eq 0 ] && export CLEAVE_TEST_DEB=1
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    status=0
    # The run is watched (tests/watch-opens.py) so that the last tests can check
    # that every file the tests opened comes from a listed package.
    /usr/bin/python3 tests/watch-opens.py build-test/opened-files.txt -- \
      xvfb-run -a -s "-screen 0 1280x1024x24" meson test -C build-test --print-errorlogs --num-processes 1 || status=$?
    /usr/bin/python3 tests/summarize.py build-test/meson-logs/testlog.json
    exit $status ;;
  packages)
    case "${2:-}" in
      build) echo $PACKAGES ;;
      test) echo $TEST_PACKAGES ;;
      *) echo "usage: $0 packages build|test" >&2; exit 2 ;;
    esac ;;
  bench)
    command -v npm >/dev/null || BENCH_PACKAGES="$BENCH_PACKAGES npm"
    WITH_TESTS=1 WITH_BENCH=1 deps
    build build
    bench/run.sh build
    bench/infer.sh build ;;
  fuzz)
    WITH_FUZZ=1 deps
    shift
    exec tests/fuzz/run.sh "$@" ;;
  *)
    sed -n '2,11p' "$0"
    exit 2 ;;
esac
