#!/usr/bin/python3
"""Interruption matrix: cleave-cli killed at every write and rename, and run on a full disk.

Usage: /usr/bin/python3 tests/hostile/kill-matrix.py --cli BUILD/src/cli/cleave-cli --base DIR --work DIR
           [--max-points N] [--only CMD,...] [--no-full-disk]

--base is the folder corrupt-corpus.py makes (DIR/base: model.safetensors, weak.safetensors,
set.modules, fmnist/). For each of train, split, compose, patch and export the script

 1. traces one run (strace -f) and counts, per thread, the calls of each syscall that
    changes files: write, pwrite64, rename, renameat, renameat2, fsync, ftruncate,
    unlink, unlinkat, openat;
 2. for each syscall and each N up to the largest count (sampled evenly down to
    --max-points when there are more), runs the command under
    strace -f -e inject=SYSCALL:signal=SIGKILL:when=N, once with no output present
    and once over an older valid output;
 3. checks that the output is absent (or the older one, byte for byte) or a complete
    file that cleave-cli info/modules opens, and that nothing else is left in the
    output folder except the command's lock (.NAME.lock) and hidden temporaries
    (.NAME.tmp-XXXXXX), and for train its checkpoint NAME.ckpt, which a later run must remove: it reruns the command to
    completion and then requires the folder to hold the output alone;
 4. with --full-disk (needs root), runs each command with its output on a 256 KiB
    tmpfs: it must fail with a message and leave the folder as it was.
Exit status 1 when any check fails.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time

SYSCALLS = ["write", "pwrite64", "rename", "renameat", "renameat2", "fsync", "ftruncate", "unlink", "unlinkat", "openat"]


def env():
    e = dict(os.environ)
    e["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    e["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    e["G_DEBUG"] = "fatal-criticals"
    e["LC_ALL"] = "C"
    return e


def commands(b, out):
    fm = os.path.join(b, "fmnist")
    return {
        "train": (["train", "-d", fm, "-o", out("m.safetensors"), "--max-train", "512", "--epochs", "1", "--batch", "32",
                   "--no-augment"], "m.safetensors", os.path.join(b, "weak.safetensors"), "info"),
        "split": (["split", os.path.join(b, "model.safetensors"), fm, "-o", out("s.modules"), "--head-epochs", "1",
                   "--rounds", "1", "--mask-epochs", "1", "--head-only-epochs", "1", "--train-images", "64",
                   "--val-images", "40", "--batch", "32", "--refit-images", "64", "--no-test"],
                  "s.modules", os.path.join(b, "set.modules"), "modules"),
        "compose": (["compose", "-o", out("c.safetensors"), os.path.join(b, "set.modules") + ":1,3"],
                    "c.safetensors", os.path.join(b, "comp.safetensors"), "info"),
        "patch": (["patch", os.path.join(b, "weak.safetensors"), os.path.join(b, "set.modules") + ":2", "-o",
                   out("p.safetensors")], "p.safetensors", os.path.join(b, "patched.safetensors"), "info"),
        "export": (["export", "--onnx", os.path.join(b, "model.safetensors"), "-o", out("m.onnx")],
                   "m.onnx", os.path.join(b, "model.onnx"), "info"),
    }


def run(argv, timeout=600):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def count_calls(args, argv, trace):
    rc, _, err = run(["strace", "-f", "-qq", "-o", trace, "-e", "trace=" + ",".join(SYSCALLS), args.cli] + argv)
    if rc != 0:
        sys.exit("kill-matrix: the traced run failed: %s\n%s" % (" ".join(argv), err))
    per = collections.defaultdict(collections.Counter)
    with open(trace) as f:
        for line in f:
            m = re.match(r"(\d+)\s+(\w+)\(", line)
            if m and m.group(2) in SYSCALLS:
                per[m.group(2)][m.group(1)] += 1
    return {s: max(c.values()) for s, c in per.items()}


def valid(args, kind, path):
    rc, _, err = run([args.cli, kind, path])
    return rc == 0, err


def check_dir(outdir, name, cname):
    """Files beside the output other than the ones a killed run may leave: its lock, hidden
    temporaries, and for train the checkpoint that --resume reads (and its temporaries)."""
    bad = []
    for n in os.listdir(outdir):
        if n in (name, "." + name + ".lock") or n.startswith("." + name + ".tmp-"):
            continue
        if cname == "train" and (n == name + ".ckpt" or n.startswith("." + name + ".ckpt.tmp-")):
            continue
        bad.append(n)
    return bad


def one(args, cname, spec, syscall, n, old, results):
    argv_t, name, old_file, kind = spec
    outdir = os.path.join(args.work, "out")
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    out = os.path.join(outdir, name)
    if old:
        shutil.copy(old_file, out)
    with open(old_file, "rb") as f:
        old_bytes = f.read()
    argv = [a.replace("@OUT@", outdir) for a in argv_t]
    rc, _, err = run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=" + syscall,
                      "-e", "inject=%s:signal=SIGKILL:when=%d" % (syscall, n), args.cli] + argv)
    problems = []
    if "Sanitizer" in err or "runtime error" in err:
        problems.append("sanitizer report")
    state = "absent"
    if os.path.exists(out):
        with open(out, "rb") as f:
            now = f.read()
        if old and now == old_bytes:
            state = "old"
        else:
            ok, verr = valid(args, kind, out)
            state = "new" if ok else "BROKEN"
            if not ok:
                problems.append("output not valid: " + verr.strip().splitlines()[-1][:200])
    strays = check_dir(outdir, name, cname)
    if strays:
        problems.append("stray files: %s" % strays)
    left = sorted(set(os.listdir(outdir)) - {name})
    # A later run cleans up what the killed one left
    if left:
        rc2, _, err2 = run([args.cli] + argv)
        after = sorted(set(os.listdir(outdir)) - {name})
        if rc2 != 0:
            problems.append("rerun failed: " + err2.strip().splitlines()[-1][:200])
        elif after:
            problems.append("left after a complete rerun: %s" % after)
    label = "%s %s#%d %s" % (cname, syscall, n, "over-old" if old else "fresh")
    results.append((label, rc, state, left, problems))
    print("%-40s rc=%-4s %-6s left=%s %s" % (label, rc, state, left, "; ".join(problems) or "ok"), flush=True)
    return not problems


def full_disk(args, cname, spec):
    argv_t, name, old_file, kind = spec
    mnt = os.path.join(args.work, "full")
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]).returncode != 0:
        print("%s full-disk: cannot mount a tmpfs (needs root): skipped" % cname)
        return True
    try:
        problems = []
        for old in (False, True):
            for n in os.listdir(mnt):
                os.unlink(os.path.join(mnt, n))
            with open(os.path.join(mnt, "user-file"), "wb") as f:
                f.write(b"x" * 1000)
            out = os.path.join(mnt, name)
            if old:
                # a small older output: a copy of the real one would not fit
                with open(out, "wb") as f:
                    f.write(b"old output")
            argv = [a.replace("@OUT@", mnt) for a in argv_t]
            rc, _, err = run([args.cli] + argv)
            names = sorted(os.listdir(mnt))
            want = sorted(["user-file"] + ([name] if old else []))
            msg = err.strip().splitlines()[-1][:160] if err.strip() else ""
            if rc == 0:
                ok, verr = valid(args, kind, out)
                if not ok:
                    problems.append("exit 0 but the output is not valid")
            elif rc != 1 or "Sanitizer" in err:
                problems.append("rc=%d" % rc)
            elif names != want:
                problems.append("left %s" % names)
            elif old and open(out, "rb").read() != b"old output":
                problems.append("older output changed")
            print("%-40s rc=%-4s files=%s %s | %s" % ("%s full-disk %s" % (cname, "over-old" if old else "fresh"),
                                                      rc, names, "; ".join(problems) or "ok", msg), flush=True)
        return not problems
    finally:
        subprocess.run(["umount", mnt])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--max-points", type=int, default=40, help="kill points per syscall (sampled evenly)")
    ap.add_argument("--only", default="")
    ap.add_argument("--full-disk", action="store_true")
    args = ap.parse_args()
    if shutil.which("strace") is None or not os.path.exists(os.path.join(args.base, "set.modules")):
        print("kill-matrix: skipped: needs strace and the base files of corrupt-corpus.py in %s" % args.base)
        return 77
    args.cli = os.path.abspath(args.cli)
    args.work = os.path.abspath(args.work)
    os.makedirs(args.work, exist_ok=True)
    cmds = commands(os.path.abspath(args.base), lambda n: os.path.join("@OUT@", n))
    if args.only:
        cmds = {k: v for k, v in cmds.items() if k in args.only.split(",")}
    results = []
    failed = 0
    t0 = time.time()
    summary = []
    for cname, spec in cmds.items():
        outdir = os.path.join(args.work, "out")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(outdir)
        counts = count_calls(args, [a.replace("@OUT@", outdir) for a in spec[0]], os.path.join(args.work, cname + ".trace"))
        print("%s: calls per thread (max) %s" % (cname, dict(sorted(counts.items()))), flush=True)
        runs = 0
        for s, c in sorted(counts.items()):
            if c > args.max_points:
                pts = sorted({1 + round(i * (c - 1) / (args.max_points - 1)) for i in range(args.max_points)})
            else:
                pts = range(1, c + 1)
            for n in pts:
                failed += not one(args, cname, spec, s, n, n % 2 == 0, results)
                runs += 1
        if args.full_disk:
            failed += not full_disk(args, cname, spec)
        summary.append((cname, counts, runs))
    print("\n| command | syscalls traced (max per thread) | kill runs |")
    print("|---|---|---:|")
    for cname, counts, runs in summary:
        print("| %s | %s | %d |" % (cname, ", ".join("%s %d" % kv for kv in sorted(counts.items())), runs))
    states = collections.Counter(r[2] for r in results)
    print("\n%d kill runs: %s; %d failed checks (%.0f s)" % (len(results), dict(states), failed, time.time() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
