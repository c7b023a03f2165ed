#!/bin/sh
# test-install.sh BUILD_DIR SOURCE_DIR: `meson install --destdir` of BUILD_DIR
# into a scratch folder outside both trees, checks that the staged tree is
# complete, then runs the staged programs with run-installed.sh (nothing may
# be read from SOURCE_DIR or BUILD_DIR). Prints TAP.
set -u
build=$(cd "$1" && pwd -P)
src=$(cd "$2" && pwd -P)
here=$(cd "$(dirname "$0")" && pwd -P)
out=$(mktemp -d "${TMPDIR:-/tmp}/cleave-install-test.XXXXXX")
trap 'rm -rf "$out"' EXIT
dest="$out/root"
# The build's own prefix (dev.sh builds with meson's default, /usr/local; the
# Debian package uses /usr).
prefix=$(meson introspect --buildoptions "$build" | jq -r '.[] | select(.name == "prefix") | .value')
p=${prefix#/}
export PREFIX="$prefix"

{
  if meson install -C "$build" --no-rebuild --quiet --destdir "$dest" > "$out/install.log" 2>&1; then
    echo "ok - meson install --destdir (post-install scripts are skipped under DESTDIR)"
  else
    echo "not ok - meson install --destdir"
    sed 's/^/#   /' "$out/install.log"
  fi
  # What the post-install step does on a real install (and the schema
  # triggers do for the package).
  glib-compile-schemas --strict "$dest/$p/share/glib-2.0/schemas" &&
    echo "ok - the installed GSettings schema compiles" || echo "not ok - the installed GSettings schema compiles"

  for f in $p/bin/cleave $p/bin/cleave-cli; do
    [ -x "$dest/$f" ] && echo "ok - $f installed" || echo "not ok - $f installed"
  done
  for f in $p/share/applications/org.cleave.Cleave.desktop \
           $p/share/metainfo/org.cleave.Cleave.metainfo.xml \
           $p/share/icons/hicolor/scalable/apps/org.cleave.Cleave.svg \
           $p/share/icons/hicolor/symbolic/apps/org.cleave.Cleave-symbolic.svg \
           $p/share/glib-2.0/schemas/org.cleave.Cleave.gschema.xml \
           $p/share/cleave/models/demo.safetensors \
           $p/share/cleave/models/weak.safetensors \
           $p/share/man/man1/cleave.1 $p/share/man/man1/cleave-cli.1; do
    [ -s "$dest/$f" ] && echo "ok - $f installed" || echo "not ok - $f installed"
  done
  # One .mo per language listed in po/LINGUAS, and no other.
  want=$(sed 's/#.*//' "$src/po/LINGUAS" | tr -s ' \t' '\n\n' | grep . | sort | tr '\n' ' ')
  have=$(cd "$dest/$p/share" && ls locale/*/LC_MESSAGES/cleave.mo 2>/dev/null | cut -d/ -f2 | sort | tr '\n' ' ')
  [ "$want" = "$have" ] && echo "ok - translations installed for exactly po/LINGUAS (${want:-none listed})" ||
    echo "not ok - translations: po/LINGUAS lists '${want}', installed '${have}'"

  # The trees as meson names them and with symbolic links resolved.
  "$here/run-installed.sh" "$dest" "$2" "$1" "$src" "$build"
} > "$out/tap" 2>&1

cat "$out/tap"
echo "1..$(grep -c -E '^(not )?ok' "$out/tap")"
grep -q '^not ok' "$out/tap" && exit 1
exit 0
