#!/usr/bin/python3
"""The same training recipe as `cleave-cli train`, in PyTorch, for the
side-by-side table in docs/RESULTS.md. The architecture comes from a Cleave
model file's `cleave.graph` metadata (so both train the very same network),
weights are freshly initialised with PyTorch's defaults.

  /usr/bin/python3 tests/reference/train_torch.py MODEL.safetensors DATASET_DIR \
      [--epochs 12] [--batch 128] [--lr 0.01] [--seed 0] [--digits] [--max-train N] [--no-eval]

DATASET_DIR is either a folder with the four IDX files (gzipped), e.g.
/usr/share/datasets/fashion-mnist, or a CIFAR-10 binary folder: train.bin and
test.bin (the decoded cache Cleave writes, ~/.cache/cleave/datasets/cifar10-decoded),
data_batch_*.bin and test_batch.bin, or a folder holding cifar-10-batches-bin/.
Recipe: SGD momentum 0.9, weight decay 1e-4 (on every parameter), lr × 0.1 at
30% and 60% of the epochs, random crop with zero-pixel padding applied before
normalising (pad 2 for 28×28, 4 for 32×32) and horizontal flip (not for
digits), per-channel mean/std from the training split, 80/20 stratified
train/validation split, full batches only, best-validation checkpoint, test
accuracy of that checkpoint. Threads: OMP_NUM_THREADS.

Training throughput (train img/s excludes validation and test) without the cost
of a full run:  OMP_NUM_THREADS=N /usr/bin/python3 tests/reference/train_torch.py \
      MODEL DATASET_DIR --max-train 5120 --epochs 1 --no-eval"""
import argparse
import glob
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_net_golden import forward  # noqa: E402  (graph-JSON interpreter shared with the net goldens)


def read_graph(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    return json.loads(meta["cleave.graph"]), json.loads(meta.get("cleave.normalize", '{"mean":[0],"std":[1]}'))


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        h, w = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, h, w)
    return np.frombuffer(data, np.uint8, offset=8)


CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_bins(files):
    """CIFAR-10 binary records: one label byte, then the R, G and B planes."""
    recs = np.concatenate([np.fromfile(f, np.uint8) for f in files])
    if recs.size == 0 or recs.size % CIFAR_RECORD:
        raise SystemExit(f"{files}: not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    recs = recs.reshape(-1, CIFAR_RECORD)
    return np.ascontiguousarray(recs[:, 1:]).reshape(-1, 3, 32, 32), recs[:, 0].astype(np.int64)


def find_cifar_bins(d):
    """(train files, test files) of a CIFAR-10 binary folder, or None."""
    if os.path.isfile(os.path.join(d, "train.bin")) and os.path.isfile(os.path.join(d, "test.bin")):
        return [os.path.join(d, "train.bin")], [os.path.join(d, "test.bin")]
    batches = sorted(glob.glob(os.path.join(d, "data_batch_*.bin")))
    if batches and os.path.isfile(os.path.join(d, "test_batch.bin")):
        return batches, [os.path.join(d, "test_batch.bin")]
    inner = os.path.join(d, "cifar-10-batches-bin")
    return find_cifar_bins(inner) if os.path.isdir(inner) else None


def load_dataset(d):
    """(x_train, y_train, x_test, y_test, kind): uint8 N×C×H×W images, int64 labels."""
    bins = find_cifar_bins(d)
    if bins:
        xtr, ytr = read_cifar_bins(bins[0])
        xte, yte = read_cifar_bins(bins[1])
        return xtr, ytr, xte, yte, "cifar-bin"
    xtr = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    return xtr, ytr, xte, yte, "idx"


def channel_norm(x):
    """Per-channel mean and (population) std of uint8 images on the 0..1 scale,
    as Cleave's cleave_dataset_compute_norm computes them."""
    c = x.shape[1]
    mean, std = [], []
    for k in range(c):
        v = x[:, k].astype(np.float64) / 255
        m = v.mean()
        var = (v * v).mean() - m * m
        mean.append(m)
        std.append(np.sqrt(var) if var > 1e-12 else 1.0)
    return mean, std


def step_lr(base, epoch, epochs, gamma=0.1):
    """cleave_step_lr with milestones at 30% and 60% of the epochs."""
    lr = base
    m1 = max(1, int(epochs * 0.3))
    for m in (m1, max(m1 + 1, int(epochs * 0.6))):
        if epoch >= m:
            lr *= gamma
    return lr


def hms(s):
    s = int(s)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


class GraphNet(nn.Module):
    """Parameters named as in the Cleave graph, default PyTorch initialisation."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.p = nn.ParameterDict()
        self.buffers_ = {}
        c, h, w = arch["input"]
        shapes = {"input": (c, h, w)}
        prev = "input"
        for n in arch["nodes"]:
            s = shapes[n.get("inputs", [prev])[0]]
            op, nm = n["op"], n["name"]
            key = nm.replace(".", "_")
            if op == "conv2d":
                m = nn.Conv2d(s[0], n["out_channels"], n["kernel"], n.get("stride", 1), n.get("pad", 0),
                              bias=n.get("bias", True))
                self.p[key + "-weight"] = m.weight
                if m.bias is not None:
                    self.p[key + "-bias"] = m.bias
                k, st, pd = n["kernel"], n.get("stride", 1), n.get("pad", 0)
                shapes[nm] = (n["out_channels"], (s[1] + 2 * pd - k) // st + 1, (s[2] + 2 * pd - k) // st + 1)
            elif op == "batchnorm2d":
                self.p[key + "-weight"] = nn.Parameter(torch.ones(s[0]))
                self.p[key + "-bias"] = nn.Parameter(torch.zeros(s[0]))
                self.register_buffer(key + "-running_mean", torch.zeros(s[0]))
                self.register_buffer(key + "-running_var", torch.ones(s[0]))
                shapes[nm] = s
            elif op in ("maxpool2d", "avgpool2d"):
                k, st, pd = n["kernel"], n.get("stride", n["kernel"]), n.get("pad", 0)
                shapes[nm] = (s[0], (s[1] + 2 * pd - k) // st + 1, (s[2] + 2 * pd - k) // st + 1)
            elif op == "global_avgpool":
                shapes[nm] = (s[0],)
            elif op == "flatten":
                shapes[nm] = (int(np.prod(s)),)
            elif op == "linear":
                m = nn.Linear(s[0], n["out_features"], bias=n.get("bias", True))
                self.p[key + "-weight"] = m.weight
                self.p[key + "-bias"] = m.bias
                shapes[nm] = (n["out_features"],)
            elif op == "concat":
                shapes[nm] = (sum(shapes[i][0] for i in n["inputs"]),) + tuple(s[1:])
            else:
                shapes[nm] = s
            prev = nm

    def params_by_name(self):
        d = {}
        for k, v in self.p.items():
            name, slot = k.rsplit("-", 1)
            d[name.replace("_", ".", 0) + "." + slot] = v
        for k, v in self.named_buffers():
            name, slot = k.rsplit("-", 1)
            d[name + "." + slot] = v
        return d

    def forward(self, x):
        params = {}
        for n in self.arch["nodes"]:
            key = n["name"].replace(".", "_")
            for slot in ("weight", "bias"):
                if key + "-" + slot in self.p:
                    params[n["name"] + "." + slot] = self.p[key + "-" + slot]
            for slot in ("running_mean", "running_var"):
                b = getattr(self, key + "-" + slot, None)
                if b is not None:
                    params[n["name"] + "." + slot] = b
        return forward_with_dropout(self.arch, params, x, self.training)


def forward_with_dropout(arch, params, x, training):
    # make_net_golden.forward treats dropout as identity; training needs it live.
    if not training or not any(n["op"] == "dropout" and n.get("p", 0.5) > 0 for n in arch["nodes"]):
        return forward(arch, params, x, training)
    return _forward_dropout(arch, params, x)


def _forward_dropout(arch, params, x):
    acts = {"input": x}
    prev = "input"
    for n in arch["nodes"]:
        ins = [acts[i] for i in n.get("inputs", [prev])]
        if n["op"] == "dropout":
            y = F.dropout(ins[0], n.get("p", 0.5), True)
        else:
            sub = {"input": list(ins[0].shape[1:]) if ins[0].dim() == 4 else [ins[0].shape[1], 1, 1],
                   "nodes": [dict(n, inputs=["input"]) if n["op"] not in ("add", "concat") else n]}
            if n["op"] in ("add", "concat"):
                y = torch.cat(ins, 1) if n["op"] == "concat" else ins[0] + ins[1]
            else:
                y = forward(sub, params, ins[0], True)
        acts[n["name"]] = y
        prev = n["name"]
    return acts[prev]


def augment(x, pad, flip, gen):
    """Random crop with zero padding and optional horizontal flip, vectorised.
    @x is on the 0..1 pixel scale, not yet normalised: the padding is a black
    pixel, as in Cleave (and torchvision's RandomCrop before Normalize)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n × h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n × w
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        f = torch.rand(n, generator=gen) < 0.5
        out[f] = out[f].flip(3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--digits", action="store_true", help="no horizontal flip (MNIST)")
    ap.add_argument("--max-train", type=int, default=0)
    ap.add_argument("--no-eval", action="store_true",
                    help="skip validation and test (throughput measurement only)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    t0 = time.time()
    arch, _ = read_graph(a.model)
    xtr, ytr, xte, yte, kind = load_dataset(a.dataset)
    if tuple(xtr.shape[1:]) != tuple(arch["input"]):
        raise SystemExit(f"{a.dataset}: {xtr.shape[1:]} images, the model expects {arch['input']}")
    rng = np.random.default_rng(a.seed)
    val_idx, tr_idx = [], []
    for c in range(int(ytr.max()) + 1):  # stratified 80/20
        idx = np.flatnonzero(ytr == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * 0.2))
        val_idx += list(idx[:k])
        tr_idx += list(idx[k:])
    tr_idx = np.array(tr_idx)
    val_idx = np.array(val_idx)
    if a.max_train:
        rng.shuffle(tr_idx)
        tr_idx = tr_idx[:a.max_train]
    # Cleave normalises with the statistics of the training split it trains on
    # (not those stored in MODEL, which may come from another run).
    mean_l, std_l = channel_norm(xtr[np.sort(tr_idx)])
    mean = torch.tensor(mean_l, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std_l, dtype=torch.float32).view(1, -1, 1, 1)
    to01 = lambda x: torch.from_numpy(np.ascontiguousarray(x)).float() / 255
    prep = lambda x: (to01(x) - mean) / std
    model = GraphNet(arch)
    opt = torch.optim.SGD(model.p.values(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(a.seed)
    pad = 4 if xtr.shape[2] >= 32 else 2
    flip = not a.digits
    x_val, y_val = xtr[val_idx], ytr[val_idx]
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads; {a.dataset} ({kind}): "
          f"{len(tr_idx)} train / {len(val_idx)} validation / {len(xte)} test images "
          f"{tuple(xtr.shape[1:])}; {a.epochs} epochs, batch {a.batch}, lr {a.lr}, crop pad {pad}, "
          f"flip {'on' if flip else 'off'}; mean {[round(m, 4) for m in mean_l]} "
          f"std {[round(v, 4) for v in std_l]}", flush=True)
    best, best_epoch, best_state, train_time, seen = -1, 0, None, 0.0, 0

    def accuracy(x, y):
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x), 256):
                correct += (model(prep(x[i:i + 256])).argmax(1).numpy() == y[i:i + 256]).sum()
        return correct / len(x)

    for epoch in range(a.epochs):
        lr = step_lr(a.lr, epoch, a.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        perm = tr_idx[torch.randperm(len(tr_idx), generator=gen).numpy()]
        e0 = time.time()
        e_seen, loss_sum, correct = 0, 0.0, 0
        # Full batches only, as Cleave (unless the set is smaller than one batch).
        n_batches = max(len(perm) // a.batch, 1)
        for i in range(0, n_batches * a.batch, a.batch):
            b = perm[i:i + a.batch]
            x = (augment(to01(xtr[b]), pad, flip, gen) - mean) / std
            yb = torch.from_numpy(ytr[b])
            out = model(x)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            e_seen += len(b)
            loss_sum += loss.item() * len(b)
            correct += (out.argmax(1) == yb).sum().item()
        e_time = time.time() - e0
        train_time += e_time
        seen += e_seen
        line = (f"epoch {epoch + 1}/{a.epochs} lr {lr:g}: loss {loss_sum / e_seen:.4f} "
                f"train {100 * correct / e_seen:.2f}%")
        if not a.no_eval:
            va = accuracy(x_val, y_val)
            line += f" val {100 * va:.2f}%"
            if va > best:
                best, best_epoch = va, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        line += (f" | {e_time:.1f} s, {e_seen / e_time:.0f} train img/s (mean {seen / train_time:.0f})"
                 f" | elapsed {hms(time.time() - t0)}")
        print(line, flush=True)
    res = {"engine": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
           "train_images": len(tr_idx), "epochs": a.epochs, "train_seconds": round(train_time, 1),
           "train_images_per_s": round(seen / train_time, 1)}
    if not a.no_eval:
        model.load_state_dict(best_state)
        te = accuracy(xte, yte)
        print(f"best epoch {best_epoch}: val {100 * best:.2f}%, test {100 * te:.2f}%", flush=True)
        res.update({"best_epoch": best_epoch, "best_val_accuracy": round(float(best), 4),
                    "test_accuracy": round(float(te), 4)})
    res["wall_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
