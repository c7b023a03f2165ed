#!/usr/bin/python3
"""PyTorch checkpoints (torch.save) for tests/test-pth.c, in tests/reference/golden/pth/:

- simcnn.pth: a SimCNN state_dict with GradSplitter's parameter names (the
  module classes of make_statedict_golden.py) at width 1/64, as
  torch.save(model.state_dict()) writes it; simcnn-io.safetensors holds an
  input batch and PyTorch's eval-mode logits.
- weak-*.pth: Cleave's "weak" CNN at width 1/8 in the other containers
  Cleave reads: {'state_dict': ..., other training state}, {'model': ...}
  holding nn.Parameters, the legacy (non-zip) format, and mixed dtypes
  (float64, and a float16 weight stored transposed, not contiguous);
  weak-io.safetensors has the input, the logits, and the logits of the mixed
  file's weights.
- cnnsplitter-simcnn.pth, cnnsplitter-rescnn.pth: CNNSplitter's own SimCNN and
  ResCNN (no BatchNorm; its parameter names), at width 1/64;
  cnnsplitter-io.safetensors holds one input and both models' logits
  ("logits": SimCNN's, "logits_rescnn").
- Hostile and broken files, written with a hand-made pickler (never loaded
  here): evil-os-system.pth (a state_dict whose entry calls os.system, in the
  zip format), evil-builtins-eval.pth (builtins.eval by protocol 4's
  STACK_GLOBAL), evil-getattr-legacy.pth (__builtin__.getattr in the legacy
  format), whole-model.pth (torch.save of an nn.Linear object), bad-stride.pth
  (a view reaching past its storage), duplicate-key.pth (a state_dict key set
  twice), big-endian.pth (PyTorch 2's byteorder entry saying "big"),
  short-storage.pth and long-storage.pth (a storage entry shorter or longer
  than the pickle claims). The commands in the evil files would create
  the file "cleave-pth-pwned" in the working directory; the test checks that
  it does not appear.

The legacy format names storages by object ids, so weak-legacy.pth differs
byte-wise from run to run (not in content); the other files are the same.

Run: /usr/bin/python3 tests/reference/make_pth_golden.py"""
import collections
import io
import os
import pickle
import sys
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_statedict_golden import SimCNN, conv_bn, write_safetensors  # noqa: E402

OUT = os.path.join(HERE, "golden", "pth")
PWN = "touch cleave-pth-pwned"


class Weak(nn.Module):
    """Cleave's "weak" preset: four conv_i = (Conv2d, BatchNorm2d), a 2×2 pool
    after the second and the fourth, then fc_4."""

    def __init__(self, w, n, in_c):
        super().__init__()
        ch = [max(1, int(round(c * w))) for c in (8, 8, 16, 16)]
        prev = in_c
        for i, c in enumerate(ch):
            setattr(self, f"conv_{i}", conv_bn(prev, c))
            prev = c
        self.fc_4 = nn.Linear(prev * 7 * 7, n)

    def forward(self, x):
        for i in range(4):
            x = F.relu(getattr(self, f"conv_{i}")(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        return self.fc_4(x.flatten(1))


class CnnSplitterSimCNN(nn.Module):
    """CNNSplitter's SimCNN: conv_i is a bare Conv2d (no BatchNorm), 512
    hidden units at full width."""

    def __init__(self, w, n, in_c):
        super().__init__()
        ch = [max(1, int(round(c * w))) for c in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)]
        prev = in_c
        for i, c in enumerate(ch):
            setattr(self, f"conv_{i}", nn.Conv2d(prev, c, 3, padding=1))
            prev = c
        hidden = max(1, int(round(512 * w)))
        self.dropout_13 = nn.Dropout()
        self.fc_13 = nn.Linear(prev, hidden)
        self.dropout_14 = nn.Dropout()
        self.fc_14 = nn.Linear(hidden, hidden)
        self.fc_15 = nn.Linear(hidden, n)

    def forward(self, x):
        for i in range(13):
            x = F.relu(getattr(self, f"conv_{i}")(x))
            if i in (1, 3, 6, 9, 12):
                x = F.max_pool2d(x, 2)
        x = F.relu(self.fc_13(self.dropout_13(x.flatten(1))))
        x = F.relu(self.fc_14(self.dropout_14(x)))
        return self.fc_15(x)


class CnnSplitterResCNN(nn.Module):
    """CNNSplitter's ResCNN: conv_i = Sequential(Conv2d, ReLU[, MaxPool2d]),
    no BatchNorm, classifier = Sequential(Flatten, Dropout, Linear)."""

    def __init__(self, w, n, in_c):
        super().__init__()
        ch = [max(1, int(round(c * w))) for c in (64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)]
        pool = (1, 4, 5, 8, 9)
        prev = in_c
        for i, c in enumerate(ch):
            layers = [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU()]
            if i in pool:
                layers.append(nn.MaxPool2d(2))
            setattr(self, f"conv_{i}", nn.Sequential(*layers))
            prev = c
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.4), nn.Linear(prev, n))

    def forward(self, x):
        x = self.conv_1(self.conv_0(x))
        for a, b in ((2, 3), (6, 7), (10, 11)):
            res = x
            x = getattr(self, f"conv_{b}")(getattr(self, f"conv_{a}")(x)) + res
            if a == 2:
                x = self.conv_5(self.conv_4(x))
            elif a == 6:
                x = self.conv_9(self.conv_8(x))
        return self.classifier(x)


def randomize_bn(m):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):  # non-trivial running statistics
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def save_io(name, x, logits, arch, in_c, hw, extra=None):
    tensors = {"x": x, "logits": logits}
    tensors.update(extra or {})
    write_safetensors(os.path.join(OUT, f"{name}-io.safetensors"), tensors,
                      {"arch": arch, "input": f"{in_c}x{hw}x{hw}"})


def models():
    torch.manual_seed(0)
    m = randomize_bn(SimCNN(1 / 64, 10, 1, 28))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        y = m(x)
    torch.save(m.state_dict(), os.path.join(OUT, "simcnn.pth"))
    save_io("simcnn", x, y, "simcnn:w=0.015625", 1, 28)

    m = randomize_bn(Weak(0.125, 10, 1))
    x = torch.randn(2, 1, 28, 28)
    sd = m.state_dict()
    # float64 convolutions and batch norms, a float16 fc_4 stored transposed (not contiguous).
    mixed = collections.OrderedDict((k, v.double() if v.is_floating_point() else v) for k, v in sd.items())
    mixed["fc_4.weight"] = sd["fc_4.weight"].half().t().contiguous().t()
    mixed["fc_4.bias"] = sd["fc_4.bias"].half()
    assert not mixed["fc_4.weight"].is_contiguous()
    with torch.no_grad():
        y = m(x)
        h = Weak(0.125, 10, 1)
        h.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in mixed.items()})
        y_mixed = h.eval()(x)
    torch.save({"state_dict": sd, "epoch": 7, "best_acc": 0.91, "arch": "weak",
                "optimizer": {"lr": [0.1, 0.01], "momentum": None, "nesterov": True, "step": -3}},
               os.path.join(OUT, "weak-state_dict.pth"))
    params = collections.OrderedDict((k, nn.Parameter(v.clone(), requires_grad=v.is_floating_point()))
                                     for k, v in sd.items())
    torch.save({"model": params, "epoch": 3}, os.path.join(OUT, "weak-model.pth"))
    torch.save(sd, os.path.join(OUT, "weak-legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(mixed, os.path.join(OUT, "weak-mixed.pth"))
    save_io("weak", x, y, "weak:w=0.125", 1, 28, {"logits_mixed": y_mixed})

    x = torch.randn(1, 3, 32, 32)
    logits = {}
    for name, cls in (("simcnn", CnnSplitterSimCNN), ("rescnn", CnnSplitterResCNN)):
        m = cls(1 / 64, 10, 3).eval()
        with torch.no_grad():
            logits[f"logits_{name}"] = m(x)
        torch.save(m.state_dict(), os.path.join(OUT, f"cnnsplitter-{name}.pth"))
    save_io("cnnsplitter", x, logits.pop("logits_simcnn"), "w=0.015625", 3, 32, logits)

    torch.save(nn.Linear(2, 2), os.path.join(OUT, "whole-model.pth"))


# ---------------------------------------------------------------- hand-made pickles

class Storage:
    """A storage for the pickler below: it becomes a persistent id, like torch's."""

    def __init__(self, key, numel, data):
        self.key, self.numel, self.data = key, numel, data


class Tensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class Call:
    """Pickles as a call of @fn with @args: what a hostile checkpoint holds."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def dumps(obj, protocol=2):
    f = io.BytesIO()
    Pickler(f, protocol).dump(obj)
    return f.getvalue()


def write_zip(name, pkl, storages, extra=()):
    def entry(path):  # a fixed date, so the files do not change from run to run
        return zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))

    with zipfile.ZipFile(os.path.join(OUT, name), "w", zipfile.ZIP_STORED) as z:
        z.writestr(entry("archive/data.pkl"), pkl)
        for s in storages:
            z.writestr(entry(f"archive/data/{s.key}"), s.data)
        z.writestr(entry("archive/version"), "3\n")
        for path, data in extra:
            z.writestr(entry(path), data)


def floats(n):
    return torch.arange(n, dtype=torch.float32).numpy().tobytes()


def hostile():
    s = Storage("0", 6, floats(6))
    ok = Tensor(s, 0, (2, 3), (3, 1))

    # os.system: pickle names it "posix system" on Linux; the file names "os system", as a hand-written one would.
    pkl = dumps(collections.OrderedDict([("fc.weight", ok), ("fc.bias", Call(os.system, PWN))]))
    assert b"cposix\nsystem\n" in pkl
    write_zip("evil-os-system.pth", pkl.replace(b"cposix\nsystem\n", b"cos\nsystem\n"), [s])

    pkl = dumps({"state_dict": {"fc.weight": ok}, "epoch": Call(eval, f"__import__('os').system('{PWN}')")}, 4)
    assert b"\x8c\x08builtins\x94\x8c\x04eval\x94\x93" in pkl
    write_zip("evil-builtins-eval.pth", pkl, [s])

    # The legacy format: magic, protocol, sys_info, the object, the storage keys, the storages.
    f = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(part, f, 2)
    obj = dumps({"fc.weight": ok, "fc.bias": Call(getattr, PWN, "upper")})
    assert b"c__builtin__\ngetattr\n" in obj
    f.write(obj)
    pickle.dump(["0"], f, 2)
    f.write((6).to_bytes(8, "little") + s.data)
    with open(os.path.join(OUT, "evil-getattr-legacy.pth"), "wb") as out:
        out.write(f.getvalue())

    # A key set twice (a dict cannot hold that; the pickle can): the last value wins, as in Python.
    pkl = dumps({"fc.weight": ok, "fc.wXight": Tensor(s, 3, (3,), (1,))})
    write_zip("duplicate-key.pth", pkl.replace(b"fc.wXight", b"fc.weight"), [s])
    write_zip("bad-stride.pth", dumps({"fc.weight": Tensor(s, 2, (2, 3), (3, 1))}), [s])
    # What PyTorch 2 adds to the archive; a big-endian byte order is refused.
    write_zip("big-endian.pth", dumps({"fc.weight": ok}), [s],
              [("archive/byteorder", "big"), ("archive/.data/serialization_id", "0123456789")])
    short = Storage("0", 6, floats(4))
    write_zip("short-storage.pth", dumps({"fc.weight": Tensor(short, 0, (2, 3), (3, 1))}), [short])
    long = Storage("0", 6, floats(8))
    write_zip("long-storage.pth", dumps({"fc.weight": Tensor(long, 0, (2, 3), (3, 1))}), [long])


def main():
    os.makedirs(OUT, exist_ok=True)
    models()
    hostile()
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):7d} {name}")


if __name__ == "__main__":
    main()
