#!/usr/bin/python3
"""The same training recipe as `cleave-cli train`, in PyTorch, for the
side-by-side table in docs/RESULTS.md. The architecture comes from a Cleave
model file's `cleave.graph` metadata (so both train the very same network),
weights are freshly initialised with PyTorch's defaults.

  /usr/bin/python3 tests/reference/train_torch.py MODEL.safetensors DATASET_DIR \
      [--epochs 12] [--batch 128] [--lr 0.01] [--seed 0] [--digits] [--max-train N]

DATASET_DIR holds the four IDX files (gzipped), e.g. /usr/share/datasets/fashion-mnist.
Recipe: SGD momentum 0.9, weight decay 1e-4, lr × 0.1 at 30% and 60% of the
epochs, random crop (pad 2 for 28×28, 4 for 32×32) and horizontal flip (not for
digits), 80/20 stratified train/validation split, best-validation checkpoint,
test accuracy of that checkpoint. Threads: OMP_NUM_THREADS."""
import argparse
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
    """Random crop with zero padding and optional horizontal flip, vectorised."""
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
    ap.add_argument("--digits", action="store_true")
    ap.add_argument("--max-train", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    arch, norm = read_graph(a.model)
    xtr = read_idx(os.path.join(a.dataset, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(a.dataset, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = read_idx(os.path.join(a.dataset, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(a.dataset, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    rng = np.random.default_rng(a.seed)
    val_idx, tr_idx = [], []
    for c in range(int(ytr.max()) + 1):  # stratified 80/20
        idx = np.flatnonzero(ytr == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * 0.2))
        val_idx += list(idx[:k])
        tr_idx += list(idx[k:])
    tr_idx = np.array(tr_idx)
    if a.max_train:
        rng.shuffle(tr_idx)
        tr_idx = tr_idx[:a.max_train]
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    prep = lambda x: (torch.from_numpy(np.array(x)).float() / 255 - mean) / std
    model = GraphNet(arch)
    opt = torch.optim.SGD(model.p.values(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(a.epochs * 0.3), int(a.epochs * 0.6)], 0.1)
    gen = torch.Generator().manual_seed(a.seed)
    pad = 4 if xtr.shape[2] >= 32 else 2
    best, best_state, t0, train_time, seen = -1, None, time.time(), 0.0, 0

    def accuracy(x, y):
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x), 500):
                correct += (model(prep(x[i:i + 500])).argmax(1).numpy() == y[i:i + 500]).sum()
        return correct / len(x)

    for epoch in range(a.epochs):
        model.train()
        perm = tr_idx[torch.randperm(len(tr_idx), generator=gen).numpy()]
        e0 = time.time()
        for i in range(0, len(perm) - a.batch + 1, a.batch):
            b = perm[i:i + a.batch]
            x = augment(prep(xtr[b]), pad, not a.digits, gen)
            loss = F.cross_entropy(model(x), torch.from_numpy(ytr[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(b)
        train_time += time.time() - e0
        sched.step()
        va = accuracy(xtr[val_idx], ytr[val_idx])
        print(f"epoch {epoch + 1}/{a.epochs}: val {100 * va:.2f}%  {seen / train_time:.0f} img/s", flush=True)
        if va > best:
            best = va
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    te = accuracy(xte, yte)
    print(json.dumps({"engine": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
                      "best_val_accuracy": round(float(best), 4), "test_accuracy": round(float(te), 4),
                      "wall_seconds": round(time.time() - t0, 1), "train_images_per_s": round(seen / train_time, 1)}))


if __name__ == "__main__":
    main()
