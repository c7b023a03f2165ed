#!/usr/bin/python3
"""Corrupted-file corpus: every file type cleave-cli reads, mutated, run through cleave-cli.

Usage: /usr/bin/python3 tests/hostile/corrupt-corpus.py --cli BUILD/src/cli/cleave-cli --work DIR
           [--variants N] [--seed S] [--jobs J] [--timeout SEC] [--rss-mb MB] [--only TYPE,...]

The script first makes one valid file of each type under DIR/base (a module set by a
short split, a composition, a patched model, an ONNX export, small IDX, CIFAR-10
binary and ImageFolder datasets, and models trained for the last two), then writes
mutants of each (truncations, byte flips, header size fields, JSON metadata edits,
ONNX dims, IDX dims, PNG/JPEG dimensions, ...) with a fixed seed, and runs the
command that reads that type on each, with a timeout and an RSS limit.

Each run is classified:
  error    exit 1 with a message naming the file (or the dataset folder)
  ok       exit 0 and the same output as the unmodified file
  warned   exit 0, a different output, and a warning on stderr
  changed  exit 0, a different output, and the mutation only changed the values of a
           still-valid file (pixels or weights a byte flip left finite): nothing can
           tell such a file from an intended one
  silent   exit 0, a different output, no warning, from a structural change
  crash    a signal, a sanitizer report or any other exit status
  critical a GLib/Json CRITICAL or WARNING on stderr
  hang     the timeout
  memory   the peak RSS over the limit
  unnamed  exit 1 but the message does not name the file
The exit status is 1 when any run is in a class other than error, ok, warned or changed.
Results: DIR/results.tsv (one line per variant), DIR/failures/ (mutant and stderr of
each bad run), and a table per type on stdout.
"""
import argparse
import concurrent.futures
import gzip
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**32 + 1, 2**53, 2**63 - 1, 2**64, -(2**31), 1048576, 65535]
BAD_VALUES = [None, True, "NaN", "nan", "inf", "-1", "", [], {}, 1e308, -1e308, 1e-300, 0.5, -0.0,
              2**63, -(2**63), "1e999", "\u00e9\u0000x"]
GOOD = ("error", "ok", "warned", "changed")


# ------------------------------------------------------------------ helpers


def run(cmd, env, timeout, cwd=None):
    """Runs @cmd in its own process group; returns (rc, stdout, stderr, rss_kb, seconds)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        hung = True
    # ru_maxrss of the finished child (wait4 through communicate already reaped it:
    # use the children's maximum since the last call, which covers this run).
    rss = read_rss(p)
    return (None if hung else p.returncode), out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), rss, time.time() - t0


def read_rss(p):
    return getattr(p, "_cleave_rss", 0)


class RssPopen(subprocess.Popen):
    """Popen that records the child's peak RSS (kB) from wait4."""

    def _try_wait(self, wait_flags):
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            pid, sts = self.pid, 0
            ru = None
        if ru is not None and pid == self.pid:
            self._cleave_rss = ru.ru_maxrss
        return (pid, sts)


subprocess.Popen = RssPopen  # noqa: the corpus only runs its own children


def sanitizer_env(timeout):
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % os.path.join(ROOT, "tests", "lsan.supp")
    env["G_DEBUG"] = "fatal-criticals"
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["CLEAVE_THREADS"] = "1"
    env["LC_ALL"] = "C"
    return env


def sh(cmd, env):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        sys.exit("corrupt-corpus: base file failed: %s\n%s" % (" ".join(cmd), r.stdout.decode()))


# ------------------------------------------------------------------ base files


def write_idx(path, arr, dims):
    magic = 0x00000800 | len(dims)
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(arr)
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0))


def make_idx_dataset(dest, n):
    src = "/usr/share/datasets/fashion-mnist"
    os.makedirs(dest, exist_ok=True)
    for split in ("train", "t10k"):
        with gzip.open(os.path.join(src, "%s-images-idx3-ubyte.gz" % split)) as f:
            img = f.read(16 + n * 784)[16:]
        with gzip.open(os.path.join(src, "%s-labels-idx1-ubyte.gz" % split)) as f:
            lab = f.read(8 + n)[8:]
        write_idx(os.path.join(dest, "%s-images-idx3-ubyte.gz" % split), img, [n, 28, 28])
        write_idx(os.path.join(dest, "%s-labels-idx1-ubyte.gz" % split), lab, [n])


def make_cifar_bin(dest, n, rng):
    os.makedirs(dest, exist_ok=True)
    for name in ("data_batch_1.bin", "test_batch.bin"):
        recs = bytearray()
        for i in range(n):
            lab = i % 10
            # a class-dependent mean so that a tiny model learns something
            px = bytes(min(255, max(0, lab * 20 + rng.randrange(-30, 30))) for _ in range(3072))
            recs += bytes([lab]) + px
        with open(os.path.join(dest, name), "wb") as f:
            f.write(recs)


def make_image_folder(dest, per_class, rng):
    from PIL import Image
    for split in ("train", "test"):
        for c in range(4):
            d = os.path.join(dest, split, "class%d" % c)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                im = Image.new("RGB", (32, 32), (c * 60, rng.randrange(256), 255 - c * 60))
                ext = "png" if i % 2 == 0 else "jpg"
                im.save(os.path.join(d, "%03d.%s" % (i, ext)))


def make_base(args, env):
    b = os.path.join(args.work, "base")
    stamp = os.path.join(b, "done")
    if os.path.exists(stamp):
        return b
    shutil.rmtree(b, ignore_errors=True)
    os.makedirs(b)
    rng = random.Random(args.seed)
    cli = args.base_cli or args.cli
    benv = dict(env)
    benv.pop("G_DEBUG", None)
    shutil.copy(os.path.join(ROOT, "data", "models", "demo.safetensors"), os.path.join(b, "model.safetensors"))
    shutil.copy(os.path.join(ROOT, "data", "models", "weak.safetensors"), os.path.join(b, "weak.safetensors"))
    make_idx_dataset(os.path.join(b, "fmnist"), 120)
    make_cifar_bin(os.path.join(b, "cifarbin"), 120, rng)
    make_image_folder(os.path.join(b, "imgs"), 6, rng)
    m = os.path.join(b, "model.safetensors")
    sh([cli, "split", m, os.path.join(b, "fmnist"), "-o", os.path.join(b, "set.modules"), "--head-epochs", "1",
        "--rounds", "1", "--mask-epochs", "1", "--head-only-epochs", "1", "--train-images", "64",
        "--val-images", "40", "--batch", "32", "--refit-images", "64", "--no-test"], benv)
    sh([cli, "compose", "-o", os.path.join(b, "comp.safetensors"), os.path.join(b, "set.modules") + ":1,3"], benv)
    sh([cli, "patch", os.path.join(b, "weak.safetensors"), os.path.join(b, "set.modules") + ":2",
        "-o", os.path.join(b, "patched.safetensors")], benv)
    sh([cli, "export", "--onnx", m, "-o", os.path.join(b, "model.onnx")], benv)
    sh([cli, "train", "-d", os.path.join(b, "cifarbin"), "-o", os.path.join(b, "cifar.safetensors"), "--epochs", "1",
        "--max-train", "120", "--no-augment", "--batch", "32"], benv)
    sh([cli, "train", "-d", os.path.join(b, "imgs"), "-o", os.path.join(b, "imgs.safetensors"), "--epochs", "1",
        "--no-augment", "--batch", "8"], benv)
    for p in ("weak-state_dict.pth", "simcnn.pth", "weak-legacy.pth"):
        shutil.copy(os.path.join(ROOT, "tests", "reference", "golden", "pth", p), os.path.join(b, p))
    open(stamp, "w").close()
    return b


# ------------------------------------------------------------------ generic mutations


def m_truncate(rng, data):
    choices = [0, 1, 4, 7, 8, 9, len(data) // 2, len(data) - 1, len(data) - 4, rng.randrange(1, max(2, len(data)))]
    n = rng.choice(choices)
    return data[:max(0, n)], "truncate@%d" % n


def m_flip(rng, data, lo=0, hi=None):
    d = bytearray(data)
    hi = len(d) if hi is None else hi
    k = rng.choice([1, 1, 2, 4, 16])
    where = []
    for _ in range(k):
        i = rng.randrange(lo, max(lo + 1, hi))
        if i < len(d):
            d[i] ^= 1 << rng.randrange(8) if rng.random() < 0.6 else rng.randrange(1, 256)
            where.append(i)
    return bytes(d), "flip@" + ",".join(map(str, where[:4]))


def m_fill(rng, data):
    d = bytearray(data)
    i = rng.randrange(len(d))
    n = rng.choice([4, 64, 1024])
    v = rng.choice([0, 0xFF])
    d[i:i + n] = bytes([v]) * len(d[i:i + n])
    return bytes(d), "fill%02x@%d+%d" % (v, i, n)


def m_insert(rng, data):
    i = rng.randrange(len(data) + 1)
    blob = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 100])))
    return data[:i] + blob + data[i:], "insert@%d+%d" % (i, len(blob))


def m_append(rng, data):
    return data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 4096]))), "append"


def generic(rng, data):
    f = rng.choice([m_truncate, m_flip, m_flip, m_fill, m_insert, m_append])
    return f(rng, data)


# ------------------------------------------------------------------ JSON mutations


def json_paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from json_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from json_paths(v, path + (i,))


def json_get(node, path):
    for p in path:
        node = node[p]
    return node


def json_set(node, path, value):
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def json_del(node, path):
    for p in path[:-1]:
        node = node[p]
    if isinstance(node, dict):
        del node[path[-1]]
    else:
        node.pop(path[-1])


def mutate_json(rng, obj, prefer_numbers=False):
    """Mutates a random element of @obj (a parsed JSON value) in place; returns a label."""
    paths = [p for p in json_paths(obj) if p]
    if not paths:
        return "none"
    if prefer_numbers:
        nums = [p for p in paths if isinstance(json_get(obj, p), (int, float)) and not isinstance(json_get(obj, p), bool)]
        if nums and rng.random() < 0.7:
            paths = nums
    p = rng.choice(paths)
    op = rng.random()
    label = "/".join(map(str, p))
    if op < 0.15:
        json_del(obj, p)
        return "del " + label
    if op < 0.55:
        v = rng.choice(HUGE_INTS)
        json_set(obj, p, v)
        return "%s=%r" % (label, v)
    if op < 0.9:
        v = rng.choice(BAD_VALUES)
        json_set(obj, p, v)
        return "%s=%r" % (label, v)
    old = json_get(obj, p)
    if isinstance(old, list) and old:
        old.append(old[0])
        return "dup " + label
    json_set(obj, p, [old, old])
    return "wrap " + label


def dumps(obj):
    # allow_nan writes NaN/Infinity tokens, which are not JSON: also a hostile case
    return json.dumps(obj, allow_nan=True)


# ------------------------------------------------------------------ safetensors


def st_split(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_join(header, payload, pad=True):
    h = json.dumps(header, allow_nan=True).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + payload


def tensors(header):
    return [k for k in header if k != "__metadata__"]


def m_st_header_len(rng, data):
    n = struct.unpack("<Q", data[:8])[0]
    v = rng.choice([0, 1, n - 1, n + 1, n + 8, len(data), len(data) - 8, 2**31, 2**32, 2**63, 2**64 - 1, 100 * 2**20])
    return struct.pack("<Q", v) + data[8:], "header_len=%d" % v


def m_st_tensor(rng, data):
    h, payload = st_split(data)
    names = tensors(h)
    if not names:
        return m_st_header_len(rng, data)
    t = rng.choice(names)
    e = h[t]
    op = rng.randrange(9)
    if op == 0:
        i = rng.randrange(2)
        e["data_offsets"][i] = rng.choice(HUGE_INTS + [e["data_offsets"][1 - i], len(payload), len(payload) + 1])
        lab = "offsets[%d]=%r" % (i, e["data_offsets"][i])
    elif op == 1:
        e["data_offsets"] = e["data_offsets"][::-1]
        lab = "offsets swapped"
    elif op == 2 and e["shape"]:
        i = rng.randrange(len(e["shape"]))
        e["shape"][i] = rng.choice(HUGE_INTS + [-5, 2.5, "3"])
        lab = "shape[%d]=%r" % (i, e["shape"][i])
    elif op == 3:
        e["shape"] = rng.choice([[], [1] * 9, e["shape"] + [1], e["shape"][::-1], [0]])
        lab = "shape=%r" % (e["shape"],)
    elif op == 4:
        e["dtype"] = rng.choice(["F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "X", 7])
        lab = "dtype=%r" % (e["dtype"],)
    elif op == 5:
        # another tensor's data range: overlapping entries
        o = rng.choice(names)
        e["data_offsets"] = list(h[o]["data_offsets"])
        lab = "offsets of %s" % o
    elif op == 6:
        # a duplicate key: the same tensor name twice in the header text
        j = json.dumps(h)
        j = j[:-1] + ', "%s": %s}' % (t, json.dumps(e))
        hb = j.encode()
        return struct.pack("<Q", len(hb)) + hb + payload, "duplicate %s" % t
    elif op == 7:
        del h[t]
        lab = "missing %s" % t
    else:
        lab = "json " + mutate_json(rng, e)
    return st_join(h, payload), "%s: %s" % (t, lab)


def m_st_metadata(rng, data):
    h, payload = st_split(data)
    md = h.get("__metadata__", {})
    if not md:
        return m_st_tensor(rng, data)
    key = rng.choice(sorted(md))
    val = md[key]
    try:
        inner = json.loads(val)
        nested = isinstance(inner, (dict, list))
    except (ValueError, TypeError):
        nested = False
    if nested and rng.random() < 0.85:
        lab = mutate_json(rng, inner, prefer_numbers=True)
        md[key] = dumps(inner)
        if rng.random() < 0.1:
            md[key] = md[key][: rng.randrange(len(md[key]))]
            lab += " (cut)"
        return st_join(h, payload), "meta %s: %s" % (key, lab)
    op = rng.randrange(4)
    if op == 0:
        del md[key]
        return st_join(h, payload), "meta del %s" % key
    if op == 1:
        md[key] = rng.choice(BAD_VALUES)
        return st_join(h, payload), "meta %s=%r (non-string)" % (key, md[key])
    md[key] = rng.choice(["", "NaN", "-1", "1e999", "{", "[]", "null", "x" * 10000, "cleave-model/999"])
    return st_join(h, payload), "meta %s=%r" % (key, md[key][:20])


def f32_positions(header, payload, want=None):
    out = []
    for t in tensors(header):
        e = header[t]
        if e.get("dtype") != "F32":
            continue
        if want and not any(w in t for w in want):
            continue
        a, b = e["data_offsets"]
        out.append((t, a, b))
    return out


def m_st_values(rng, data, embedded=False):
    """Writes NaN/Inf/huge/negative values into F32 tensors: the file stays well formed."""
    h, payload = st_split(data)
    hl = len(data) - len(payload)
    pos = f32_positions(h, payload)
    if not pos:
        return m_flip(rng, data, hl)
    rv = [p for p in pos if p[0].endswith("running_var")]
    if rv and rng.random() < 0.25:
        t, a, b = rng.choice(rv)
        v = -1.0
    else:
        t, a, b = rng.choice(pos)
        v = rng.choice([float("nan"), float("inf"), float("-inf"), 3.0e38])
    if b - a < 4:
        return m_flip(rng, data, hl)
    i = a + 4 * rng.randrange((b - a) // 4)
    p = bytearray(payload)
    p[i:i + 4] = struct.pack("<f", v)
    valid = " (valid file)" if v == v and abs(v) != float("inf") and not (v < 0 and t.endswith("running_var")) else ""
    return data[:hl] + bytes(p), "value %s[%d]=%r%s" % (t, (i - a) // 4, v, valid)


def m_st_payload_flip(rng, data):
    h, payload = st_split(data)
    hl = len(data) - len(payload)
    d, lab = m_flip(rng, data, hl)
    return d, "payload " + lab


def safetensors_mutations():
    return [(m_truncate, 2), (m_flip, 2), (m_fill, 1), (m_insert, 1), (m_append, 1), (m_st_header_len, 2),
            (m_st_tensor, 6), (m_st_metadata, 8), (m_st_values, 3), (m_st_payload_flip, 2)]


# ------------------------------------------------------------------ ONNX


def onnx_mutations():
    def structural(rng, data):
        import onnx
        m = onnx.load_from_string(data)
        g = m.graph
        op = rng.randrange(7)
        if op == 0 and len(g.initializer):
            t = rng.choice(g.initializer)
            if t.dims:
                i = rng.randrange(len(t.dims))
                t.dims[i] = rng.choice([0, -1, 2**31 - 1, 2**40, 1048576, t.dims[i] + 1])
                return m.SerializeToString(), "init %s dims[%d]=%d" % (t.name, i, t.dims[i])
        if op == 1 and len(g.initializer):
            t = rng.choice(g.initializer)
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
            return m.SerializeToString(), "init %s raw_data cut" % t.name
        if op == 2:
            d = g.input[0].type.tensor_type.shape.dim
            i = rng.randrange(len(d))
            d[i].dim_value = rng.choice([0, 2**31 - 1, 2**40, 3, 65535])
            return m.SerializeToString(), "input dim[%d]=%d" % (i, d[i].dim_value)
        if op == 3:
            n = rng.choice(g.node)
            if len(n.attribute):
                a = rng.choice(n.attribute)
                if a.ints:
                    j = rng.randrange(len(a.ints))
                    a.ints[j] = rng.choice([0, -1, 2**31 - 1, 2**40, 65535])
                    return m.SerializeToString(), "%s.%s[%d]=%d" % (n.name, a.name, j, a.ints[j])
                if a.type == onnx.AttributeProto.FLOAT:
                    a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0])
                    return m.SerializeToString(), "%s.%s=%r" % (n.name, a.name, a.f)
                a.i = rng.choice([0, -1, 2**31 - 1, 2**40])
                return m.SerializeToString(), "%s.%s=%d" % (n.name, a.name, a.i)
        if op == 4:
            n = rng.choice(g.node)
            if n.input:
                i = rng.randrange(len(n.input))
                n.input[i] = rng.choice(["missing", n.output[0], ""])
                # an empty name omits an optional input (a bias): still a valid model
                valid = " (valid file)" if n.input[i] == "" and i >= 2 else ""
                return m.SerializeToString(), "%s input %d renamed %r%s" % (n.name, i, n.input[i], valid)
        if op == 5 and len(g.initializer):
            t = rng.choice(g.initializer)
            if t.data_type == 1 and len(t.raw_data) >= 4:
                raw = bytearray(t.raw_data)
                i = 4 * rng.randrange(len(raw) // 4)
                raw[i:i + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf")]))
                t.raw_data = bytes(raw)
                return m.SerializeToString(), "init %s value non-finite" % t.name
        if op == 6 and len(g.initializer):
            t = rng.choice(g.initializer)
            t.data_type = rng.choice([0, 2, 7, 10, 11, 16, 99])
            return m.SerializeToString(), "init %s data_type=%d" % (t.name, t.data_type)
        n = rng.choice(g.node)
        n.op_type = rng.choice(["Gemm", "Conv", "Nope", "Loop", ""])
        return m.SerializeToString(), "%s op_type=%s" % (n.name, n.op_type)

    def varint_flip(rng, data):
        # a length field (a varint after a length-delimited tag) set huge
        d = bytearray(data)
        for _ in range(50):
            i = rng.randrange(len(d) - 6)
            if d[i] & 7 == 2 and d[i] >> 3 in (1, 2, 3, 4, 5, 7, 8, 9, 13):
                d[i + 1:i + 2] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
                return bytes(d), "varint len huge@%d" % i
        return m_flip(rng, data)

    return [(m_truncate, 2), (m_flip, 3), (m_fill, 1), (m_insert, 1), (m_append, 1), (structural, 8), (varint_flip, 2)]


# ------------------------------------------------------------------ PyTorch zip


def pth_mutations():
    def member(rng, data):
        zin = zipfile.ZipFile(io.BytesIO(data))
        names = zin.namelist()
        target = rng.choice(names)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            for n in names:
                b = zin.read(n)
                if n == target:
                    b, lab = generic(rng, b) if b else (b"\x80", "one byte")
                    if rng.random() < 0.15:
                        lab += " (dropped)"
                        continue
                zout.writestr(n, b)
        # a storage's bytes changed in place (the CRC rewritten): other weights, a valid file
        if "/data/" in target and (lab.startswith("flip") or lab.startswith("fill")) and "(dropped)" not in lab:
            lab += " (valid file)"
        return out.getvalue(), "member %s %s" % (target, lab)

    def pickle_ints(rng, data):
        # BININT/LONG1 constants in data.pkl (storage sizes, shapes, strides, offsets)
        zin = zipfile.ZipFile(io.BytesIO(data))
        names = zin.namelist()
        pk = [n for n in names if n.endswith("data.pkl")]
        if not pk:
            return member(rng, data)
        b = bytearray(zin.read(pk[0]))
        spots = [i for i in range(len(b) - 5) if b[i] in (ord("J"), ord("K"), ord("M"))]
        if not spots:
            return member(rng, data)
        i = rng.choice(spots)
        if b[i] == ord("J"):
            b[i + 1:i + 5] = struct.pack("<i", rng.choice([-1, 2**31 - 1, -(2**31), 0, 65536]))
        elif b[i] == ord("K"):
            b[i + 1] = rng.choice([0, 255, 9])
        else:
            b[i + 1:i + 3] = struct.pack("<H", rng.choice([0, 65535, 4097]))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            for n in names:
                zout.writestr(n, bytes(b) if n == pk[0] else zin.read(n))
        # shapes, strides and offsets that stay inside their storage describe a valid tensor
        # (torch.load reads them too): a file the reader accepts is a valid one
        return out.getvalue(), "pickle int@%d (valid file)" % i

    return [(m_truncate, 2), (m_flip, 3), (m_fill, 1), (m_insert, 1), (m_append, 1), (member, 5), (pickle_ints, 5)]


# ------------------------------------------------------------------ IDX


def idx_mutations():
    def raw(rng, data):
        d = gzip.decompress(data)
        op = rng.randrange(6)
        ndim = d[3]
        if op == 0:
            i = rng.randrange(ndim)
            v = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 65535, 60001, struct.unpack(">I", d[4 + 4 * i:8 + 4 * i])[0] + 1])
            d = d[:4 + 4 * i] + struct.pack(">I", v) + d[8 + 4 * i:]
            lab = "dim[%d]=%d" % (i, v)
        elif op == 1:
            d = d[:2] + bytes([rng.choice([0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF])]) + d[3:]
            lab = "dtype=%02x" % d[2]
        elif op == 2:
            d = d[:3] + bytes([rng.choice([0, 1, 2, 4, 9, 255])]) + d[4:]
            lab = "ndim=%d" % d[3]
        elif op == 3:
            d, lab = m_truncate(rng, d)
        elif op == 4:
            if ndim == 1:
                b = bytearray(d)
                b[8 + rng.randrange(len(d) - 8)] = rng.choice([10, 200, 255])
                return gzip.compress(bytes(b), mtime=0), "label out of range"
            d, lab = d + b"\x00" * 784, "extra record bytes"
        else:
            d, lab = m_flip(rng, d, 0, 16)
        return gzip.compress(d, mtime=0), "raw " + lab

    def trailing(rng, data):
        return data + rng.choice([b"\x00" * 10, b"garbage", gzip.compress(b"more", mtime=0)]), "trailing after gzip"

    def pixels(rng, data):
        d = bytearray(gzip.decompress(data))
        hl = 4 + 4 * d[3]
        for _ in range(8):
            d[rng.randrange(hl, len(d))] ^= 0xFF
        return gzip.compress(bytes(d), mtime=0), "payload flip (valid file)"

    return [(m_truncate, 2), (m_flip, 3), (m_fill, 1), (m_append, 1), (raw, 8), (trailing, 1), (pixels, 1)]


# ------------------------------------------------------------------ CIFAR binary


def cifar_mutations():
    def cut(rng, data):
        n = rng.choice([0, 1, 3072, 3073 - 1, 3074, len(data) - 1, len(data) - 3072])
        return data[:n], "cut@%d" % n

    def label(rng, data):
        d = bytearray(data)
        r = rng.randrange(len(d) // 3073)
        d[r * 3073] = rng.choice([10, 11, 200, 255])
        return bytes(d), "label[%d]=%d" % (r, d[r * 3073])

    def extra(rng, data):
        return data + bytes(rng.choice([1, 100, 3072])), "extra bytes"

    def pixels(rng, data):
        d = bytearray(data)
        r = rng.randrange(len(d) // 3073)
        d[r * 3073 + 1 + rng.randrange(3072)] ^= 0xFF
        return bytes(d), "payload flip (valid file)"

    return [(cut, 4), (label, 4), (extra, 2), (m_flip, 1), (pixels, 1)]


# ------------------------------------------------------------------ PNG / JPEG


def png_chunks(data):
    i = 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        yield i, data[i + 4:i + 8], n
        i += 12 + n


def png_set_ihdr(data, w, h, depth=None, ctype=None):
    d = bytearray(data)
    i = 8
    body = bytearray(d[i + 8:i + 8 + 13])
    body[0:4] = struct.pack(">I", w)
    body[4:8] = struct.pack(">I", h)
    if depth is not None:
        body[8] = depth
    if ctype is not None:
        body[9] = ctype
    d[i + 8:i + 21] = body
    d[i + 21:i + 25] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
    return bytes(d)


def jpeg_set_sof(data, w, h):
    d = bytearray(data)
    i = 2
    while i + 4 < len(d):
        if d[i] != 0xFF:
            break
        marker = d[i + 1]
        n = struct.unpack(">H", d[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            d[i + 5:i + 7] = struct.pack(">H", h)
            d[i + 7:i + 9] = struct.pack(">H", w)
            return bytes(d)
        i += 2 + n
    return bytes(d)


def image_mutations():
    def dims(rng, data):
        w, h = rng.choice([(65535, 65535), (65500, 65500), (0, 32), (32, 0), (1, 1), (100000, 1), (1, 100000),
                           (2**31 - 1, 1), (64, 64), (31, 32), (8192, 8192)])
        if data[:4] == b"\x89PNG":
            if w > 65535 or h > 65535 or rng.random() < 0.3:
                return png_set_ihdr(data, w, h), "png %dx%d" % (w, h)
            return png_set_ihdr(data, w, h, depth=rng.choice([None, 16, 1, 7]), ctype=rng.choice([None, 0, 3, 4, 5])), "png %dx%d+type" % (w, h)
        return jpeg_set_sof(data, min(w, 65535), min(h, 65535)), "jpeg %dx%d" % (min(w, 65535), min(h, 65535))

    def empty(rng, data):
        return rng.choice([b"", b"not an image", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]), "empty/stub"

    return [(m_truncate, 3), (m_flip, 3), (m_fill, 1), (dims, 6), (empty, 1)]


# ------------------------------------------------------------------ types


def types(base):
    b = base
    j = lambda *p: os.path.join(b, *p)
    fm = j("fmnist")
    return {
        # name: (original file, relative path of the mutant inside its case folder or None,
        #        commands (each a list, "{f}" = mutant, "{d}" = case folder), mutations, share)
        "model": (j("model.safetensors"), "model.safetensors",
                  [["info", "{f}"], ["eval", "{f}", fm, "--json"]], safetensors_mutations(), 16),
        "modules": (j("set.modules"), "set.modules", [["modules", "{f}", "--json"],
                    ["compose", "-o", "{d}/c.safetensors", "{f}:1,3"],
                    ["eval", "{d}/c.safetensors", fm + ":1,3", "--json"]], safetensors_mutations(), 12),
        "composition": (j("comp.safetensors"), "comp.safetensors",
                        [["info", "{f}"], ["eval", "{f}", fm + ":1,3", "--json"]], safetensors_mutations(), 10),
        "patched": (j("patched.safetensors"), "patched.safetensors",
                    [["eval", "{f}", fm, "--json"]], safetensors_mutations(), 10),
        "onnx": (j("model.onnx"), "model.onnx", [["info", "{f}"], ["eval", "{f}", fm, "--json"]], onnx_mutations(), 12),
        "pth": (j("weak-state_dict.pth"), "weak.pth", [["info", "{f}", "--arch", "weak:w=0.125"],
                ["eval", "{f}", fm, "--arch", "weak:w=0.125", "--json"]], pth_mutations(), 8),
        "pth-simcnn": (j("simcnn.pth"), "simcnn.pth", [["info", "{f}", "--arch", "simcnn:w=0.015625"]], pth_mutations(), 4),
        "idx-images": (j("fmnist", "t10k-images-idx3-ubyte.gz"), "fmnist/t10k-images-idx3-ubyte.gz",
                       [["eval", j("model.safetensors"), "{d}/fmnist", "--json"]], idx_mutations(), 7),
        "idx-labels": (j("fmnist", "t10k-labels-idx1-ubyte.gz"), "fmnist/t10k-labels-idx1-ubyte.gz",
                       [["eval", j("model.safetensors"), "{d}/fmnist", "--json"]], idx_mutations(), 5),
        "cifar-bin": (j("cifarbin", "test_batch.bin"), "cifarbin/test_batch.bin",
                      [["eval", j("cifar.safetensors"), "{d}/cifarbin", "--json"]], cifar_mutations(), 6),
        "png": (j("imgs", "test", "class1", "000.png"), "imgs/test/class1/000.png",
                [["eval", j("imgs.safetensors"), "{d}/imgs", "--json"]], image_mutations(), 5),
        "jpeg": (j("imgs", "test", "class2", "001.jpg"), "imgs/test/class2/001.jpg",
                 [["eval", j("imgs.safetensors"), "{d}/imgs", "--json"]], image_mutations(), 5),
    }


def dataset_root(rel):
    return rel.split("/")[0] if "/" in rel else None


# Commands that show what a file says (its hash, metadata, stored numbers): any output
# is right for them as long as they exit 0 or fail cleanly; eval's numbers are compared.
DISPLAY = ("info", "modules", "compose")
PAYLOAD_ONLY = ("payload flip (valid file)", "payload ")


def numbers(out):
    """eval --json output without the class names (a file may lack them: then the
    dataset's are shown), so that only the results are compared."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "name"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    try:
        return json.dumps(strip(json.loads(out)), sort_keys=True)
    except ValueError:
        return out


def valid_metadata_edit(label):
    """A metadata edit that leaves a valid file: cleave.normalize (optional) removed, or one
    of its numbers set to another value the loader accepts (|mean| <= 1000, std in [1e-6, 1000])."""
    if label.endswith("meta del cleave.normalize"):
        return True
    m = re.search(r"meta cleave.normalize: (mean|std)/\d+=(-?[0-9.e+]+)$", label)
    if not m:
        return False
    v = float(m.group(2))
    return abs(v) <= 1000 if m.group(1) == "mean" else 1e-6 <= v <= 1000


def classify(rc, out, err, rss, args, orig_out, names, label, compare):
    if rc is None:
        return "hang"
    if rss > args.rss_mb * 1024:
        return "memory"
    if "Sanitizer" in err or "runtime error:" in err:
        return "crash"
    if "-CRITICAL" in err or "-WARNING **" in err or "-ERROR **" in err:
        return "critical"
    if rc == 1:
        return "error" if any(n in err for n in names) else "unnamed"
    if rc != 0:
        return "crash"
    if not compare or numbers(out) == numbers(orig_out):
        return "ok"
    if "warning" in err.lower():
        return "warned"
    if label.startswith(PAYLOAD_ONLY) or "(valid file)" in label or valid_metadata_edit(label):
        return "changed"
    return "silent"


def onnx_skeleton(data):
    import onnx
    m = onnx.load_from_string(data)
    for t in m.graph.initializer:
        t.raw_data = b""
    return m.SerializeToString()


def payload_only(orig, data, mdata):
    """Whether @mdata differs from @data only in tensor values (a still valid file)."""
    if len(data) != len(mdata) or data == mdata:
        return False
    if orig.endswith(".safetensors") or orig.endswith(".modules"):
        n = 8 + struct.unpack("<Q", data[:8])[0]
        return data[:n] == mdata[:n]
    if orig.endswith(".onnx"):
        try:
            return onnx_skeleton(data) == onnx_skeleton(mdata)
        except Exception:
            return False
    return False


def case(args, env, tname, spec, idx, orig_outs):
    try:
        return case_run(args, env, tname, spec, idx, orig_outs)
    except Exception:
        import traceback
        return tname, idx, "?", 0, None, "script-error", 0, 0, traceback.format_exc().replace("\n", " | ")


def case_run(args, env, tname, spec, idx, orig_outs):
    orig, rel, cmds, muts, _ = spec
    rng = random.Random("%d-%s-%d" % (args.seed, tname, idx))
    with open(orig, "rb") as f:
        data = f.read()
    fs, ws = zip(*muts)
    mut = rng.choices(fs, weights=ws)[0]
    try:
        mdata, label = mut(rng, data)
    except Exception as e:  # a mutation that does not apply to this file: fall back to a flip
        mdata, label = m_flip(rng, data)
        label += " (fallback: %s)" % type(e).__name__
    if payload_only(orig, data, mdata) and not label.startswith("value "):
        label = "payload " + label
    d = os.path.join(args.work, "cases", "%s-%04d" % (tname, idx))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    root = dataset_root(rel)
    if root:
        shutil.copytree(os.path.join(args.base, root), os.path.join(d, root))
    f = os.path.join(d, rel)
    with open(f, "wb") as fh:
        fh.write(mdata)
    names = [os.path.basename(f)] + (["'%s'" % root, os.path.join(d, root)] if root else [])
    results = []
    cls = "ok"
    for ci, c in enumerate(cmds):
        argv = [args.cli] + [a.replace("{f}", f).replace("{d}", d) for a in c]
        rc, out, err, rss, secs = run(argv, env, args.timeout, cwd=d)
        out = out.replace(f, orig).replace(d, args.base)
        cls = classify(rc, out, err, rss, args, orig_outs[ci], names, label, c[0] not in DISPLAY)
        results.append((ci, rc, cls, rss, secs, err))
        if cls != "ok":
            break
    ci, rc, cls, rss, secs, err = results[-1]
    if cls not in GOOD:
        fd = os.path.join(args.work, "failures", "%s-%04d" % (tname, idx))
        os.makedirs(fd, exist_ok=True)
        shutil.copy(f, os.path.join(fd, os.path.basename(f)))
        with open(os.path.join(fd, "stderr.txt"), "w") as fh:
            fh.write("%s\ncommand %d rc=%s rss=%dkB %.1fs\n\n%s" % (label, ci, rc, rss, secs, err))
    shutil.rmtree(d, ignore_errors=True)
    first = err.strip().splitlines()[-1][:160] if err.strip() else ""
    return tname, idx, label, ci, rc, cls, rss, secs, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--base-cli", help="cleave-cli used to make the base files (default --cli)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--variants", type=int, default=2600)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--rss-mb", type=int, default=3000)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    try:
        import onnx  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        print("corrupt-corpus: skipped: %s" % e)
        return 77
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        print("corrupt-corpus: skipped: no /usr/share/datasets/fashion-mnist")
        return 77
    args.cli = os.path.abspath(args.cli)
    args.work = os.path.abspath(args.work)
    env = sanitizer_env(args.timeout)
    args.base = make_base(args, env)
    ts = types(args.base)
    if args.only:
        ts = {k: v for k, v in ts.items() if k in args.only.split(",")}
    shutil.rmtree(os.path.join(args.work, "failures"), ignore_errors=True)
    total_share = sum(v[4] for v in ts.values())
    jobs = []
    orig = {}
    for t, spec in ts.items():
        outs = []
        for c in spec[2]:
            argv = [args.cli] + [a.replace("{f}", spec[0]).replace("{d}", args.base) for a in c]
            rc, out, err, rss, secs = run(argv, env, args.timeout * 3)
            if rc != 0:
                sys.exit("corrupt-corpus: the unmodified %s fails: %s\n%s" % (t, " ".join(argv), err))
            outs.append(out)
        orig[t] = outs
        n = max(1, round(args.variants * spec[4] / total_share))
        jobs += [(t, spec, i) for i in range(n)]
    counts = {}
    t0 = time.time()
    with open(os.path.join(args.work, "results.tsv"), "w") as tsv, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        tsv.write("type\tindex\tmutation\tcommand\trc\tclass\trss_kb\tseconds\tlast_stderr_line\n")
        futs = [ex.submit(case, args, env, t, spec, i, orig[t]) for t, spec, i in jobs]
        for k, fu in enumerate(concurrent.futures.as_completed(futs)):
            r = fu.result()
            tsv.write("\t".join(str(x).replace("\t", " ").replace("\n", " ") for x in r) + "\n")
            tsv.flush()
            counts.setdefault(r[0], {}).setdefault(r[5], 0)
            counts[r[0]][r[5]] += 1
            if r[5] not in GOOD:
                print("BAD %s-%04d %s: %s (%s)" % (r[0], r[1], r[5], r[2], r[8]), flush=True)
            if (k + 1) % 200 == 0:
                print("... %d/%d in %.0f s" % (k + 1, len(futs), time.time() - t0), flush=True)
    classes = ["error", "ok", "warned", "changed", "silent", "unnamed", "critical", "crash", "hang", "memory"]
    print("\n| type | variants | " + " | ".join(classes) + " |")
    print("|---|---:|" + "---:|" * len(classes))
    tot = {c: 0 for c in classes}
    for t in ts:
        row = counts.get(t, {})
        for c in classes:
            tot[c] += row.get(c, 0)
        print("| %s | %d | %s |" % (t, sum(row.values()), " | ".join(str(row.get(c, 0)) for c in classes)))
    print("| all | %d | %s |" % (sum(tot.values()), " | ".join(str(tot[c]) for c in classes)))
    print("(%.0f s)" % (time.time() - t0))
    bad = sum(v for c, v in tot.items() if c not in GOOD)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
