#!/bin/sh
# run-installed.sh ROOT FORBIDDEN...: runs an installed Cleave the way a user
# would and prints TAP result lines, unnumbered and without a plan (the
# caller adds the plan); exits 1 when any failed.
#
# ROOT is the root the programs were installed under ("" or "/" for a real
# install, a DESTDIR otherwise). Each FORBIDDEN path (the source and build
# trees) must never be touched: both programs run under `env -i` with a
# scratch HOME, from a scratch folder, and under `strace -f -e trace=%file`
# when strace is present; any file system call naming a FORBIDDEN path fails
# the test.
#
#   - `cleave-cli demo` (the whole demo, with a short GradSplitter search:
#     --train-images 512 --rounds 1) must finish and use ROOT's demo model;
#   - `cleave ROOT/usr/share/cleave/models/demo.safetensors` under Xvfb must
#     map a window titled with the model's name (the title changes only once
#     the model has loaded) and still be running 3 s later.
set -u
ROOT=${1%/}
shift
status=0

ok () { echo "ok - $1"; }
not_ok () { echo "not ok - $1"; status=1; }
check () { desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/cleave-installed.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home" "$scratch/work"
PREFIX=${PREFIX:-/usr}
share="$ROOT$PREFIX/share"
model="$share/cleave/models/demo.safetensors"

STRACE=""
if command -v strace >/dev/null 2>&1; then
  STRACE=strace
else
  echo "# strace not found: the runs are not traced for reads of the source and build trees"
fi

forbidden="$*"
# The environment of a fresh login, pointing at ROOT's data. The sanitizer
# options pass through for sanitized builds.
clean_env () {
  env -i PATH=/usr/bin:/bin HOME="$scratch/home" LANG=C.UTF-8 \
    XDG_CACHE_HOME="$scratch/home/.cache" XDG_CONFIG_HOME="$scratch/home/.config" \
    XDG_DATA_HOME="$scratch/home/.local/share" XDG_DATA_DIRS="$share:/usr/share" \
    XDG_RUNTIME_DIR="$scratch/home" \
    GSETTINGS_SCHEMA_DIR="$share/glib-2.0/schemas" GSETTINGS_BACKEND=memory \
    NO_AT_BRIDGE=1 GTK_A11Y=none GSK_RENDERER=cairo \
    OMP_NUM_THREADS=2 \
    ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} ${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS} \
    "$@"
}
# Runs "$@" under strace (when present), the trace going to $1.
traced () {
  log=$1; shift
  : > "$log"
  if [ -n "$STRACE" ]; then
    clean_env strace -f -qq --seccomp-bpf -e trace=%file -o "$log" "$@"
  else
    clean_env "$@"
  fi
}
# Checks a trace: it must hold calls, and none naming a forbidden path
# (those are printed as TAP comments).
check_trace () {
  what=$1 log=$2
  [ -n "$STRACE" ] || return 0
  if [ ! -s "$log" ]; then
    not_ok "$what: the trace is empty"
    return
  fi
  hit=0
  for f in $forbidden; do
    if grep -F -- "$f" "$log" > "$scratch/hits"; then
      sed -n '1,10s/^/#   /p' "$scratch/hits"
      hit=1
    fi
  done
  if [ $hit -eq 1 ]; then not_ok "$what touches the source or build tree"
  else ok "$what touches no source or build path ($(wc -l < "$log") file calls traced)"; fi
}

cd "$scratch/work" || exit 1

# ---- the command-line demo
cli="$ROOT$PREFIX/bin/cleave-cli"
start=$(date +%s)
traced "$scratch/cli.trace" "$cli" demo --train-images 512 --rounds 1 -o "$scratch/work/out" \
  > "$scratch/cli.log" 2>&1
rc=$?
echo "# cleave-cli demo: exit $rc after $(( $(date +%s) - start )) s"
sed -n -e '/^Cleave demo:/s/^/# /p' -e '/accuracy  A/s/^/# /p' -e '/^demo finished/s/^/# /p' "$scratch/cli.log"
if [ $rc -ne 0 ]; then
  tail -n 30 "$scratch/cli.log" | sed 's/^/#   /'
fi
check "installed cleave-cli demo exits 0" test $rc -eq 0
check "it uses the installed demo model ($model)" grep -qxF "Cleave demo: $model on Fashion-MNIST; files go to $scratch/work/out/" "$scratch/cli.log"
check "it writes the composed and patched models" test -s out/footwear.safetensors -a -s out/patched.safetensors
check_trace cleave-cli "$scratch/cli.trace"

# ---- the application under Xvfb, opening the installed demo model
cat > "$scratch/app.sh" <<'APP'
#!/bin/sh
# Runs inside xvfb-run: starts the app, waits for its window to carry the
# model's name, checks it is still running 3 s later, stops it.
trace=$1 title=$2; shift 2
# The app writes its own pid first (strace, when used, is its parent).
if [ -n "$STRACE" ]; then
  strace -f -qq --seccomp-bpf -e trace=%file -o "$trace" sh -c 'echo $$ > "$0.pid"; exec "$@"' "$trace" "$@" &
else
  sh -c 'echo $$ > "$0.pid"; exec "$@"' "$trace" "$@" &
fi
runner=$!
i=0
while [ ! -s "$trace.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
pid=$(cat "$trace.pid")
i=1
while [ $i -le 120 ]; do
  if xwininfo -root -tree 2>/dev/null | grep -qF "\"$title\""; then
    echo "window \"$title\" mapped after ${i} s"
    sleep 3
    kill -0 "$pid" 2>/dev/null && echo alive
    kill "$pid"
    wait $runner
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { wait $runner; echo "the app exited early (status $?)"; exit 1; }
  sleep 1
  i=$((i + 1))
done
echo "no window titled $title after 120 s; windows:"
xwininfo -root -tree | grep -v '(has no name)' | head -20
kill "$pid"
wait $runner
exit 1
APP
# A private session bus, as on a desktop, when dbus-run-session is there.
BUS=""
command -v dbus-run-session >/dev/null 2>&1 && BUS="dbus-run-session --"
clean_env STRACE="$STRACE" xvfb-run -a -s "-screen 0 1280x1024x24" \
  $BUS sh "$scratch/app.sh" "$scratch/app.trace" demo.safetensors "$ROOT$PREFIX/bin/cleave" "$model" \
  > "$scratch/app.log" 2>&1
rc=$?
sed 's/^/# /' "$scratch/app.log" | grep -v "^# $" | head -20
check "installed cleave maps a window showing the demo model" test $rc -eq 0
check "the app is still running 3 s later" grep -qx alive "$scratch/app.log"
check_trace cleave "$scratch/app.trace"
exit $status
