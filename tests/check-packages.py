#!/usr/bin/python3
"""Prove that dev.sh's package lists name everything Cleave needs.

    check-packages.py BUILDDIR [--opened FILE] [--without PKG]... [--expect-missing PKG]

Packages that every Debian system has (Essential: yes, Priority: required)
count as present.

- Building: every program meson looked up while configuring BUILDDIR, every
  pkg-config dependency it found and the compiler are mapped to the Debian
  package that owns them; that package must be installed by dev.sh's build
  list (directly or as a dependency of a listed package) or be part of
  build-essential. Programs used only as test commands count as testing.
- Testing: every program executed while the test suite ran, and every Python
  module and dataset file it opened (from the list tests/watch-opens.py
  writes), must come from the build list, the test list or build-essential.
- A program meson looked for and did not find is a failure too: the tests
  that need it would be skipped without a word.

--without PKG drops PKG from the lists first, and --expect-missing PKG turns
the check around: it passes only if the check fails and names PKG. The test
suite uses the pair to show that a removed entry is caught.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lookups that meson makes in turn: a miss is fine when the alternative is found.
ALTERNATIVES = {"gtk4-update-icon-cache": "gtk-update-icon-cache"}
USRMERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")


def dev_sh_list(purpose):
    out = subprocess.run([os.path.join(SRCDIR, "dev.sh"), "packages", purpose],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def file_owners():
    """path -> package, from dpkg's file lists (both halves of /usr-merged paths)."""
    owners = {}
    for lst in glob.glob("/var/lib/dpkg/info/*.list"):
        pkg = os.path.basename(lst)[:-5].split(":")[0]
        with open(lst, errors="replace") as f:
            for line in f:
                p = line.rstrip("\n")
                owners.setdefault(p, pkg)
                if p.startswith(USRMERGED):
                    owners.setdefault("/usr" + p, pkg)
    return owners


def owner_of(path, owners):
    for p in (path, os.path.realpath(path)):
        if p in owners:
            return owners[p]
    return None


def installed_packages():
    """name -> (depends, provides) for every installed package, from dpkg's status."""
    pkgs, provides, base = {}, {}, []
    with open("/var/lib/dpkg/status", errors="replace") as f:
        for stanza in f.read().split("\n\n"):
            fields = dict(re.findall(r"^([\w-]+): ?(.*(?:\n .*)*)", stanza, re.M))
            if "install ok installed" not in fields.get("Status", ""):
                continue
            name = fields["Package"]
            if fields.get("Essential") == "yes" or fields.get("Priority") == "required":
                base.append(name)
            deps = []
            for key in ("Depends", "Pre-Depends"):
                for clause in fields.get(key, "").replace("\n", " ").split(","):
                    alts = [re.sub(r"\(.*?\)|\[.*?\]|:\w+", "", a).strip() for a in clause.split("|")]
                    deps.append([a for a in alts if a])
            pkgs[name] = [d for d in deps if d]
            for p in fields.get("Provides", "").split(","):
                p = re.sub(r"\(.*?\)|:\w+", "", p).strip()
                if p:
                    provides.setdefault(p, set()).add(name)
    return pkgs, provides, base


def closure(roots, pkgs, provides):
    """Installed packages that installing ROOTS brings in (Depends, Pre-Depends)."""
    todo, seen = list(roots), set()
    while todo:
        name = todo.pop()
        for cand in [name] + sorted(provides.get(name, ())):
            if cand in pkgs and cand not in seen:
                seen.add(cand)
                for alts in pkgs[cand]:
                    todo.extend(a for a in alts if a in pkgs or a in provides)
    return seen


def meson_lookups(builddir):
    """(found programs, missing programs, pkg-config names, compilers) from the configure log."""
    log = open(os.path.join(builddir, "meson-logs", "meson-log.txt"), errors="replace").read()
    found = set(re.findall(r"^Program \S+ found: YES \(([^)\s]+)", log, re.M))
    missing = set(re.findall(r"^Program (\S+) found: NO", log, re.M))
    deps = set(re.findall(r"^Run-time dependency (\S+) found: YES", log, re.M))
    compilers = set(re.findall(r"^C compiler for the host machine: (\S+)", log, re.M))
    return found, missing, deps, compilers


def test_commands(builddir):
    out = subprocess.run(["meson", "introspect", "--tests", builddir],
                         check=True, capture_output=True, text=True).stdout
    return {t["cmd"][0] for t in json.loads(out) if t["cmd"] and t["cmd"][0].startswith("/usr/")}


def needed_file(line):
    """The path of a watched file the tests need, or None. Needed: every
    program executed, and the Python modules and datasets opened. Other opens
    are left out: libraries come with the programs' packages, and programs
    scan whole folders of whatever happens to be installed (GdkPixbuf
    loaders, GSettings schemas, NSS modules), which a machine without those
    packages does without. So is everything dpkg and apt do (the package
    test's install runs triggers over the whole system)."""
    kind, _, path = line.partition(" ") if not line.startswith("/") else ("open", "", line)
    if kind.endswith("-pm") or not path:
        return None
    if kind == "exec":
        return path
    if path.startswith("/usr/share/datasets/"):
        return path
    if re.match(r"/usr/lib/python3(\.\d+)?/", path) and not path.endswith(".pth"):
        return path
    return None


def debian_build_depends():
    path = os.path.join(SRCDIR, "debian", "control")
    if not os.path.exists(path):
        return []
    m = re.search(r"^Build-Depends:(.*(?:\n[ \t].*)*)", open(path).read(), re.M)
    names = []
    for clause in (m.group(1) if m else "").split(","):
        alt = re.sub(r"\(.*?\)|\[.*?\]|<.*?>|:\w+", "", clause.split("|")[0]).strip()
        if alt and not alt.startswith("debhelper-compat"):
            names.append(alt)
    return names


def which(prog):
    for d in os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, prog)
        if os.access(p, os.X_OK):
            return p
    return None


def pc_path(name):
    r = subprocess.run(["pkg-config", "--path", name], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def check(args):
    build = dev_sh_list("build") - set(args.without)
    test = dev_sh_list("test") - set(args.without)
    owners = file_owners()
    pkgs, provides, base = installed_packages()
    # build-essential, and what every Debian system has (Essential or
    # Priority: required, as debootstrap's minbase installs).
    essential = closure(["build-essential"] + base, pkgs, provides)
    build_ok = closure(build, pkgs, provides) | essential
    test_ok = closure(build | test, pkgs, provides) | essential
    problems, notes = [], []

    def need(path, allowed, purpose, what):
        pkg = owner_of(path, owners)
        if pkg is None:
            if "/__pycache__/" in path or path.startswith("/usr/local/"):
                return  # written at run time, or installed by hand: not Debian's
            notes.append(f"{what}: {path} belongs to no Debian package (not checked)")
        elif pkg not in allowed:
            problems.append((pkg, f"{what}: {path} comes from package '{pkg}', which dev.sh's "
                                  f"{purpose} list neither names nor pulls in"))

    found, missing, deps, compilers = meson_lookups(args.builddir)
    tests = test_commands(args.builddir)
    for prog in sorted(found):
        if prog.startswith("/usr/") or prog.startswith(USRMERGED):
            need(prog, test_ok if prog in tests else build_ok,
                 "test" if prog in tests else "build", "meson found program")
    found_names = {os.path.basename(p) for p in found}
    for prog in sorted(missing):
        if ALTERNATIVES.get(prog) in found_names:
            continue
        problems.append((None, f"meson looked for program '{prog}' and did not find it "
                               "(install the package that provides it and list it in dev.sh)"))
    for dep in sorted(deps):
        pc = pc_path(dep)
        if pc:
            need(pc, build_ok, "build", f"meson dependency '{dep}'")
    for cc in sorted(compilers):
        path = which(cc)
        if path:
            need(path, build_ok, "build", "C compiler")

    # tests/install/test-deb.sh builds the Debian package: its Build-Depends
    # must be installed by the lists too.
    for pkg in debian_build_depends():
        if pkg not in test_ok and pkg not in provides:
            problems.append((pkg, f"debian/control Build-Depends names '{pkg}', which dev.sh's "
                                  "lists neither name nor pull in"))

    opened = []
    if args.opened and os.path.exists(args.opened):
        lines = open(args.opened).read().splitlines()
        if lines and lines[0].startswith("# not watched"):
            notes.append(f"run-time check skipped: {lines[0][2:]}")
        opened = [needed_file(l) for l in lines if not l.startswith("#")]
        opened = [p for p in opened if p]
    elif args.opened:
        notes.append(f"run-time check skipped: {args.opened} does not exist")
    for path in opened:
        need(path, test_ok, "test", "used while testing")

    dedup = {}
    for pkg, msg in problems:
        dedup.setdefault(pkg or msg, msg)
    return list(dedup.items()), notes, len(opened)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builddir")
    ap.add_argument("--opened")
    ap.add_argument("--without", action="append", default=[])
    ap.add_argument("--expect-missing")
    ap.add_argument("--needs-watch", action="store_true",
                    help="exit 77 (skipped) when the tests' opened files were not recorded")
    args = ap.parse_args()
    if args.needs_watch:
        head = open(args.opened).readline() if args.opened and os.path.exists(args.opened) else "# none"
        if head.startswith("# not watched") or head.startswith("# none"):
            print("skipped: the test suite did not run under tests/watch-opens.py (see dev.sh test)")
            sys.exit(77)
    problems, notes, n_opened = check(args)
    for n in notes[:5]:
        print("note:", n)
    if len(notes) > 5:
        print(f"note: … and {len(notes) - 5} more")
    for _, msg in problems:
        print("MISSING:", msg)
    if args.expect_missing:
        named = any(k == args.expect_missing for k, _ in problems)
        print(f"{'ok' if named else 'FAIL'}: without '{args.expect_missing}' the check "
              f"{'fails and names it' if named else 'does not name it'}")
        sys.exit(0 if named else 1)
    print(f"checked the configure log of {args.builddir} and {n_opened} files opened by the tests: "
          f"{len(problems)} missing")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
