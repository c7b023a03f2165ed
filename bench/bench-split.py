#!/usr/bin/python3
"""GradSplitter search written in PyTorch, for the speed comparison with
`cleave-cli split --method grad` (bench/bench-split.sh).

Same model weights (read from the Cleave model file: safetensors parsed by
hand, the network rebuilt from its cleave.graph JSON), same search as
src/core/cleave-gradsplitter.c: frozen network (BN on running statistics, no
dropout), all N modules at once (the batch replicated N times, group g masked
with module g's mask after each conv's ReLU, residual-tied sites sharing one
θ), hard masks with a straight-through gradient clipped to [-1, 1], a
ReLU → Linear(N,10) → ReLU → Linear(10,1) → sigmoid head per module (hidden
unit 0 starting as the identity on logit g, calibrated to the logits' scale
like calibrate_heads), CE over the N scores (--loss scores) or over the heads'
pre-sigmoid outputs (--loss logits) + α·G^round·mean(mask), Adam (or row-wise
Adam on θ, --mask-optimizer adam-row) restarted at each phase, the schedule
[head epochs] + rounds × ([mask epochs] + [head-only epochs]), head-only
epochs with --head-passes N (pass 1 computes and keeps the masked logits,
passes 2…N train the heads on them, reshuffled), validation of the
composition after every epoch. Prints images/s through the search counted as
cleave-cli split counts them: each epoch's training images once (the cached
passes of a head-only epoch add none), over the wall time of the search
(head calibration, source accuracy and validation included).
The training/validation split is a seeded stratified split like Cleave's,
not bit-identical to it, and the seeds draw different streams (irrelevant
for speed; accuracies differ by noise).
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HID = 10


# ---------------------------------------------------------------- model file

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    dtypes = {"F32": "<f4", "I32": "<i4", "I64": "<i8"}   # (module-set files hold I32 kept-kernel indices)
    for name, t in header.items():
        if t["dtype"] not in dtypes:
            raise SystemExit("%s: tensor %s is %s, expected F32, I32 or I64" % (path, name, t["dtype"]))
        b, e = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dtypes[t["dtype"]]).copy()).reshape(t["shape"])
    return tensors, meta


class Graph:
    """The Cleave graph JSON as a list of nodes, plus its mask sites."""

    def __init__(self, graph_json, weights):
        g = json.loads(graph_json)
        self.input = g["input"]
        self.nodes = [{"name": "input", "op": "input", "inputs": []}] + g["nodes"]
        self.index = {n["name"]: i for i, n in enumerate(self.nodes)}
        for n in self.nodes:
            n["in"] = [self.index[x] for x in n.get("inputs", [])]
        self.w = weights
        self._mask_sites()

    def consumers(self, i):
        return [j for j in range(i + 1, len(self.nodes)) for k in self.nodes[j]["in"] if k == i]

    def _mask_sites(self):
        self.sites = []          # (conv index, node index, channels)
        site_of_node = {}
        for i, n in enumerate(self.nodes):
            if n["op"] != "conv2d":
                continue
            cur = i
            while True:
                c = self.consumers(cur)
                if len(c) != 1:
                    break
                m = self.nodes[c[0]]
                if m["op"] == "batchnorm2d" and self.nodes[cur]["op"] == "conv2d":
                    cur = c[0]
                elif m["op"] == "relu":
                    cur = c[0]
                    break
                else:
                    break
            site_of_node[cur] = len(self.sites)
            self.sites.append((i, cur, n["out_channels"]))
        tie = list(range(len(self.sites)))

        def root(s):
            while tie[s] != s:
                s = tie[s]
            return s

        def source(idx):
            while idx > 0:
                if idx in site_of_node:
                    return site_of_node[idx]
                n = self.nodes[idx]
                if n["op"] in ("batchnorm2d", "relu", "maxpool2d", "avgpool2d", "dropout", "sigmoid", "add"):
                    idx = n["in"][0]
                else:
                    return -1
            return -1

        for n in self.nodes:
            if n["op"] == "add":
                a, b = source(n["in"][0]), source(n["in"][1])
                if a >= 0 and b >= 0:
                    ra, rb = root(a), root(b)
                    tie[max(ra, rb)] = min(ra, rb)
        self.tie = [root(s) for s in range(len(self.sites))]
        self.site_of_node = site_of_node
        self.total_kernels = sum(c for _, _, c in self.sites)

    def forward(self, x, masks, groups):
        """x: [G*B, C, H, W]; masks[s]: [G, C] for every site (tied sites share a tensor)."""
        act = [x]
        w = self.w
        for i, n in enumerate(self.nodes[1:], 1):
            op, name = n["op"], n["name"]
            a = act[n["in"][0]] if n["in"] else None
            if op == "conv2d":
                y = F.conv2d(a, w[name + ".weight"], w.get(name + ".bias"), n.get("stride", 1), n.get("pad", 0),
                             1, n.get("groups", 1))
            elif op == "batchnorm2d":
                y = F.batch_norm(a, w[name + ".running_mean"], w[name + ".running_var"], w[name + ".weight"],
                                 w[name + ".bias"], False, 0.0, n.get("eps", 1e-5))
            elif op == "relu":
                y = F.relu(a)
            elif op == "sigmoid":
                y = torch.sigmoid(a)
            elif op == "maxpool2d":
                y = F.max_pool2d(a, n["kernel"], n["stride"], n.get("pad", 0))
            elif op == "avgpool2d":
                y = F.avg_pool2d(a, n["kernel"], n["stride"], n.get("pad", 0))
            elif op == "global_avgpool":
                y = a.mean((2, 3))
            elif op == "flatten":
                y = a.reshape(a.shape[0], -1)
            elif op == "linear":
                y = F.linear(a, w[name + ".weight"], w.get(name + ".bias"))
            elif op == "dropout":
                y = a
            elif op == "add":
                y = a + act[n["in"][1]]
            elif op == "concat":
                y = torch.cat([act[k] for k in n["in"]], 1)
            else:
                raise SystemExit("unsupported op " + op)
            s = self.site_of_node.get(i)
            if s is not None and masks is not None:
                m = masks[s]
                shp = y.shape
                y = (y.view(groups, shp[0] // groups, *shp[1:]) * m.view(groups, 1, m.shape[1], *([1] * (len(shp) - 2)))).view(shp)
            act.append(y)
        return act[-1]


# ---------------------------------------------------------------- data

def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load_fashion(root):
    x = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"))
    return x[:, None, :, :], y.astype(np.int64)


def split(labels, val_fraction, seed):
    rng = np.random.RandomState(seed)
    tr, va = [], []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rng.shuffle(idx)
        nv = int(round(len(idx) * val_fraction))
        va += list(idx[:nv])
        tr += list(idx[nv:])
    return np.array(tr), np.array(va)


# ---------------------------------------------------------------- search

class Ste(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta):
        return (theta > 0).float()

    @staticmethod
    def backward(ctx, g):
        return g.clamp(-1.0, 1.0)


def hard_mask(theta):
    m = Ste.apply(theta)
    empty = ~(theta > 0).any(1)
    if bool(empty.any()):
        fix = torch.zeros_like(theta)
        rows = torch.nonzero(empty).flatten()
        fix[rows, theta[rows].argmax(1)] = 1.0
        m = m + fix
    return m


def head_z(logits, heads, n, b):
    """Pre-sigmoid head outputs [B, N]; logits rows are group-major (g·b + i)."""
    w1, b1, w2, b2 = heads
    h = F.relu(logits.reshape(n, b, n))
    a1 = F.relu(torch.einsum("gbj,gij->gbi", h, w1) + b1[:, None, :])
    return (torch.einsum("gbi,gi->gb", a1, w2) + b2[:, None]).t()


def head_scores(logits, heads, n, b):
    return torch.sigmoid(head_z(logits, heads, n, b))


class RowAdam:
    """Adam on θ with the second moment averaged over each row (one module's
    kernels of one site or tie group), as row_adam_update in Cleave."""

    def __init__(self, params, lr):
        self.params, self.lr, self.t = params, lr, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        bc1, bc2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            den = v.mean(1, keepdim=True).sqrt() / bc2 ** 0.5 + 1e-8
            p.sub_(self.lr / bc1 * m / den)


def main():
    # Defaults: those of cleave_grad_split_options_init and cleave-cli split;
    # bench-split.sh passes every search option explicitly to both sides anyway.
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--head-epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--mask-epochs", type=int, default=2)
    ap.add_argument("--head-only-epochs", type=int, default=1)
    ap.add_argument("--batch", "-b", type=int, default=64)
    ap.add_argument("--train-images", type=int, default=1536)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--val", type=float, default=0.2, help="validation fraction of the training split")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--alpha-growth", type=float, default=1.0)
    ap.add_argument("--lr-head", type=float, default=0.001)
    ap.add_argument("--lr-mask", type=float, default=0.01)
    ap.add_argument("--lr-head-joint", type=float, default=0.0005)
    ap.add_argument("--theta-init", type=float, default=0.2)
    ap.add_argument("--loss", choices=("scores", "logits"), default="scores")
    ap.add_argument("--head-passes", type=int, default=1)
    ap.add_argument("--mask-optimizer", choices=("adam", "adam-row"), default="adam")
    # Accepted so that one option list serves both sides; they only steer
    # Cleave's choice among the logged epochs after the search.
    ap.add_argument("--max-loss", type=float, default=1.0, help="ignored (selection only)")
    ap.add_argument("--uniform-epoch", action="store_true", help="ignored (selection only)")
    ap.add_argument("--refit-images", type=int, default=0, help="ignored (Cleave's head refit after the search)")
    ap.add_argument("--refit-passes", type=int, default=0, help="ignored (Cleave's head refit after the search)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    a = ap.parse_args()
    if a.head_passes < 1 or not a.alpha_growth > 0 or a.batch < 1:
        ap.error("--head-passes must be ≥ 1, --alpha-growth > 0, --batch ≥ 1")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    weights, meta = read_safetensors(a.model)
    graph = Graph(meta["cleave.graph"], weights)
    norm = json.loads(meta["cleave.normalize"])
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    images, labels = load_fashion(a.data)
    train_idx, val_idx = split(labels, a.val, a.seed)
    rng = np.random.RandomState(a.seed + 1)
    val = rng.permutation(val_idx)[:a.val_images] if a.val_images else val_idx
    n = graph.nodes[-1]["out_features"]
    B = a.batch
    logit_loss = a.loss == "logits"

    def batch(idx):
        x = torch.from_numpy(images[idx].astype(np.float32) / 255.0)
        return (x - mean) / std, torch.from_numpy(labels[idx])

    leaders = [s for s in range(len(graph.sites)) if graph.tie[s] == s]
    theta = {s: torch.full((n, graph.sites[s][2]), a.theta_init, requires_grad=True) for s in leaders}

    # Heads as cleave_grad_search_new builds them: nn.Linear's uniform init,
    # then hidden unit 0 of head g = relu(logit g), the rest damped.
    w1 = (torch.rand(n, HID, n) * 2 - 1) / n ** 0.5
    b1 = (torch.rand(n, HID) * 2 - 1) / n ** 0.5
    w2 = (torch.rand(n, HID) * 2 - 1) / HID ** 0.5 * 0.1
    b2 = torch.full((n,), -1.0)
    w1[:, 0, :] = torch.eye(n)
    b1[:, 0] = 0.0
    w2[:, 0] = 1.0
    heads = [w1.requires_grad_(), b1.requires_grad_(), w2.requires_grad_(), b2.requires_grad_()]

    def masks_now(grad):
        m = {s: hard_mask(theta[s]) if grad else hard_mask(theta[s].detach()) for s in leaders}
        return [m[graph.tie[s]] for s in range(len(graph.sites))], m

    def masked_logits(x, grad_masks):
        ms, per = masks_now(grad_masks)
        return graph.forward(x.repeat(n, 1, 1, 1), ms, n), per

    def ce(z, y):
        return F.cross_entropy(z if logit_loss else torch.sigmoid(z), y)

    t0 = time.time()
    with torch.no_grad():
        # calibrate_heads: one scale c for all heads so that a typical
        # winning logit sits at sigmoid(+2) and a zero logit at sigmoid(-2).
        pick = np.random.RandomState(a.seed * 31 + 17).permutation(train_idx)[:min(max(B, 64), len(train_idx))]
        x, _ = batch(pick)
        lg, _ = masked_logits(x, False)
        top = lg[:len(pick)].clamp(min=0).max(1).values.sum()
        if float(top) > 0:
            w2[:, 1:] = 0.0
            w2[:, 0] = 4.0 * len(pick) / float(top)
            b2[:] = -2.0
        hits = 0
        for i in range(0, len(val), 128):
            x, y = batch(val[i:i + 128])
            hits += int((graph.forward(x, None, 1).argmax(1) == y).sum())
    source_acc = hits / len(val)
    print("source validation accuracy %.2f%% (%d images)" % (100 * source_acc, len(val)), flush=True)

    per_round = a.mask_epochs + a.head_only_epochs
    total_epochs = a.head_epochs + a.rounds * per_round
    per_epoch = min(a.train_images, len(train_idx)) if a.train_images else len(train_idx)
    order = np.array(train_idx)
    images_done = 0
    for e in range(total_epochs):
        # Cleave's schedule: phase, Adam restarts and the round of α.
        r = e - a.head_epochs
        if r < 0:
            phase, start, rnd = "heads", e == 0, 0
        else:
            k = r % per_round
            phase = "masks" if k < a.mask_epochs else "heads"
            start, rnd = k == 0 or k == a.mask_epochs or e == 0, r // per_round
        alpha = a.alpha * a.alpha_growth ** rnd
        if start:
            opt_m = (RowAdam if a.mask_optimizer == "adam-row" else torch.optim.Adam)(list(theta.values()), lr=a.lr_mask)
            opt_h = torch.optim.Adam(heads, lr=a.lr_head_joint if phase == "masks" else a.lr_head)
        erng = np.random.RandomState(a.seed * 1000003 + e)
        erng.shuffle(order)
        steps = per_epoch // B if per_epoch >= B else 1
        bsz = min(B, per_epoch)
        caching = phase == "heads" and a.head_passes > 1
        if caching:
            cache = torch.empty(n, steps * bsz, n)
            cache_y = torch.empty(steps * bsz, dtype=torch.int64)
        te = time.time()
        loss_sum, seen, right = 0.0, 0, 0
        for k in range(steps):
            x, y = batch(order[k * B:k * B + bsz])
            b = x.shape[0]
            opt_h.zero_grad()
            opt_m.zero_grad()
            if phase == "masks":
                lg, per = masked_logits(x, True)
                mean_m = torch.cat([per[graph.tie[i]].flatten() for i in range(len(graph.sites))]).mean()
                z = head_z(lg, heads, n, b)
                loss = ce(z, y) + alpha * mean_m
                loss.backward()
                opt_m.step()
            else:
                with torch.no_grad():
                    lg, _ = masked_logits(x, False)
                if caching:
                    cache[:, k * bsz:k * bsz + b] = lg.view(n, b, n)
                    cache_y[k * bsz:k * bsz + b] = y
                z = head_z(lg, heads, n, b)
                loss = ce(z, y)
                loss.backward()
            opt_h.step()
            loss_sum += float(loss) * b
            seen += b
            right += int((z.detach().argmax(1) == y).sum())
        images_done += seen
        if caching:
            # Passes 2… over the logits of pass 1, heads only (head_step_cached);
            # like Cleave, they add no images to the count.
            cached = steps * bsz
            for _ in range(1, a.head_passes):
                perm = torch.from_numpy(erng.permutation(cached))
                loss_sum, seen, right = 0.0, 0, 0
                for i0 in range(0, cached, B):
                    idx = perm[i0:i0 + B]
                    b = len(idx)
                    opt_h.zero_grad()
                    z = head_z(cache[:, idx], heads, n, b)
                    loss = ce(z, cache_y[idx])
                    loss.backward()
                    opt_h.step()
                    loss_sum += float(loss) * b
                    seen += b
                    right += int((z.detach().argmax(1) == cache_y[idx]).sum())
        with torch.no_grad():
            hits = 0
            for i in range(0, len(val), 32):
                x, y = batch(val[i:i + 32])
                lg, _ = masked_logits(x, False)
                hits += int((head_z(lg, heads, n, x.shape[0]).argmax(1) == y).sum())
            _, per = masks_now(False)
            kept = sum(float(per[graph.tie[i]].sum()) for i in range(len(graph.sites)))
        print("epoch %d %s: loss %.4f acc %.2f%% val %.2f%% KRR %.2f%% (%.1f s)" %
              (e + 1, phase, loss_sum / max(seen, 1), 100 * right / max(seen, 1), 100 * hits / len(val),
               100 * kept / (n * graph.total_kernels), time.time() - te), flush=True)
    wall = time.time() - t0
    print("pytorch: %d training images through the search in %.1f s: %.1f images/s" %
          (images_done, wall, images_done / wall), flush=True)


if __name__ == "__main__":
    sys.exit(main())
