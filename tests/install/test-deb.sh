#!/bin/sh
# test-deb.sh [SOURCE_DIR]: the Debian package, end to end. Prints TAP.
#
#   1. copies SOURCE_DIR's tracked and unignored files (default: this
#      checkout) to a scratch folder, so the build starts clean and its
#      output (which dpkg-buildpackage writes to the parent folder) lands
#      there too;
#   2. dpkg-buildpackage -us -uc -b, then lintian on the result;
#   3. apt-get install ./cleave_*.deb (which pulls in Depends and Recommends);
#   4. run-installed.sh on the installed programs: cleave-cli demo and the
#      app under Xvfb, neither touching SOURCE_DIR or the build copy;
#   5. apt-get purge cleave (only when it was not installed before), and
#      checks that its files are gone.
#
# CLEAVE_DEB_OUT=DIR keeps a copy of the built .deb there. It runs only with
# CLEAVE_TEST_DEB=1 (meson test registers it; dev.sh test sets that as root).
#
# Needs root or sudo, the package's Build-Depends, lintian, xvfb, xauth and
# x11-utils (strace when present); takes minutes.
set -u
if [ -z "${CLEAVE_TEST_DEB:-}" ]; then
  echo "1..0 # SKIP builds, installs and purges the package: set CLEAVE_TEST_DEB=1 (root or sudo)"
  exit 0
fi
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd -P)
here=$(cd "$(dirname "$0")" && pwd -P)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
scratch=$(mktemp -d "${TMPDIR:-/tmp}/cleave-deb-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
tap="$scratch/tap"
: > "$tap"
ok () { echo "ok - $1" >> "$tap"; }
not_ok () { echo "not ok - $1" >> "$tap"; }
finish () {
  cat "$tap"
  echo "1..$(grep -c -E '^(not )?ok' "$tap")"
  grep -q '^not ok' "$tap" && exit 1
  exit 0
}

version=$(cd "$src" && dpkg-parsechangelog -S Version)
upstream=${version%-*}
tree="$scratch/cleave-$upstream"
mkdir -p "$tree"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - --no-recursion) |
  tar -xf - -C "$tree"

# ---- build
start=$(date +%s)
if (cd "$tree" && dpkg-buildpackage -us -uc -b) > "$scratch/build.log" 2>&1; then
  ok "dpkg-buildpackage -us -uc -b ($(( $(date +%s) - start )) s)"
else
  not_ok "dpkg-buildpackage -us -uc -b"
  tail -n 40 "$scratch/build.log" | sed 's/^/#   /' >> "$tap"
  finish
fi
grep -E '^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP)' "$scratch/build.log" | sed 's/^/# build-time test /' >> "$tap"
deb=$(ls "$scratch"/cleave_"$version"_*.deb)
echo "# $(basename "$deb"): $(du -k "$deb" | cut -f1) KiB" >> "$tap"
[ -n "${CLEAVE_DEB_OUT:-}" ] && cp "$deb" "$CLEAVE_DEB_OUT"/

# ---- lintian: no error or warning (overrides carry their reasons)
if lintian --fail-on error,warning --display-info "$scratch"/cleave_"$version"_*.changes > "$scratch/lintian.log" 2>&1; then
  ok "lintian: no errors or warnings"
else
  not_ok "lintian: no errors or warnings"
fi
sed 's/^/#   lintian: /' "$scratch/lintian.log" >> "$tap"

# ---- the package's contents
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$scratch/contents"
for f in /usr/bin/cleave /usr/bin/cleave-cli \
         /usr/share/applications/org.cleave.Cleave.desktop \
         /usr/share/metainfo/org.cleave.Cleave.metainfo.xml \
         /usr/share/icons/hicolor/scalable/apps/org.cleave.Cleave.svg \
         /usr/share/icons/hicolor/symbolic/apps/org.cleave.Cleave-symbolic.svg \
         /usr/share/glib-2.0/schemas/org.cleave.Cleave.gschema.xml \
         /usr/share/cleave/models/demo.safetensors /usr/share/cleave/models/weak.safetensors \
         /usr/share/man/man1/cleave.1.gz /usr/share/man/man1/cleave-cli.1.gz; do
  grep -qxF "$f" "$scratch/contents" && ok "the package holds $f" || not_ok "the package holds $f"
done

# ---- install, run, remove
was_installed=no
dpkg-query -W -f='${Status}' cleave 2>/dev/null | grep -q "install ok installed" && was_installed=yes
if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" > "$scratch/install.log" 2>&1; then
  ok "apt-get install ./$(basename "$deb")"
else
  not_ok "apt-get install ./$(basename "$deb")"
  tail -n 20 "$scratch/install.log" | sed 's/^/#   /' >> "$tap"
  finish
fi
"$here/run-installed.sh" / "$src" "$tree" >> "$tap" 2>&1
if [ $was_installed = no ]; then
  if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q cleave > "$scratch/purge.log" 2>&1 &&
     [ ! -e /usr/bin/cleave-cli ] && [ ! -e /usr/share/cleave ]; then
    ok "apt-get purge cleave removes its files"
  else
    not_ok "apt-get purge cleave removes its files"
  fi
else
  echo "# cleave was installed before this test: left installed (now this build)" >> "$tap"
fi
finish
