#!/usr/bin/python3
"""What limits a GradSplitter module set: diagnostics in PyTorch.

Reads a module-set file written by `cleave-cli split --method grad` (each
module an extracted network plus its head; the network is rebuilt from the
module's graph JSON by bench/bench-split.py's Graph), and reports on the
official Fashion-MNIST test split:

  stored      the composition as saved (argmax of the heads' outputs); it
              should equal the test accuracy `cleave-cli split` printed
  refit       the ten heads refitted jointly (Adam, lr 0.002, CE over the
              heads' outputs, 20 epochs over 10,000 training images): is it
              the heads?
  recal       each module's BatchNorm running statistics re-estimated on
              2,048 training images through its own kept kernels, with the
              stored and with refitted heads: is it the statistics that
              masking shifts?

With --mix OTHER, it also swaps modules one at a time between the two sets
(this set = A, OTHER = B): the composed accuracy and mean KRR of A with one
module from B, and of B with one module from A.

Usage: /usr/bin/python3 experiments/split-diagnostics.py MODULES [--mix OTHER]
                        [--data /usr/share/datasets/fashion-mnist]
"""
import argparse
import importlib.util
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_split", os.path.join(HERE, "..", "bench", "bench-split.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

class ModuleSet:
    def __init__(self, path):
        tensors, meta = bs.read_safetensors(path)
        if "cleave.modules" not in meta:
            raise SystemExit("%s: no cleave.modules metadata (not a module-set file)" % path)
        self.info = json.loads(meta["cleave.modules"])
        self.graphs, self.heads = [], []
        for k, mod in enumerate(self.info["modules"]):
            pre = "module.%d." % k
            w = {name[len(pre):]: t for name, t in tensors.items() if name.startswith(pre)}
            g = mod["graph"]
            self.graphs.append(bs.Graph(g if isinstance(g, str) else json.dumps(g), w))
            self.heads.append([w["head.w1"], w["head.b1"].reshape(-1), w["head.w2"].reshape(-1), w["head.b2"].reshape(())])
        self.n = len(self.graphs)
        self.total = self.info["total_kernels"]

    def kept(self, k):
        return self.graphs[k].total_kernels


def node_forward(g, node, act):
    """One node of bench-split's Graph, for the layer-by-layer recalibration."""
    w, op, name = g.w, node["op"], node["name"]
    a = act[node["in"][0]] if node["in"] else None
    if op == "conv2d":
        return F.conv2d(a, w[name + ".weight"], w.get(name + ".bias"), node.get("stride", 1), node.get("pad", 0),
                        1, node.get("groups", 1))
    if op == "batchnorm2d":
        return F.batch_norm(a, w[name + ".running_mean"], w[name + ".running_var"], w[name + ".weight"],
                            w[name + ".bias"], False, 0.0, node.get("eps", 1e-5))
    if op == "relu":
        return F.relu(a)
    if op == "maxpool2d":
        return F.max_pool2d(a, node["kernel"], node["stride"], node.get("pad", 0))
    if op == "avgpool2d":
        return F.avg_pool2d(a, node["kernel"], node["stride"], node.get("pad", 0))
    if op == "global_avgpool":
        return a.mean((2, 3))
    if op == "flatten":
        return a.reshape(a.shape[0], -1)
    if op == "linear":
        return F.linear(a, w[name + ".weight"], w.get(name + ".bias"))
    if op == "dropout":
        return a
    if op == "add":
        return a + act[node["in"][1]]
    if op == "concat":
        return torch.cat([act[i] for i in node["in"]], 1)
    raise SystemExit("unsupported op " + op)


@torch.no_grad()
def recalibrated(g, x):
    """A copy of module network g whose BatchNorm running statistics are the
    (biased) batch statistics of x flowing through g, layer by layer."""
    r = bs.Graph.__new__(bs.Graph)
    r.__dict__.update(g.__dict__)
    r.w = dict(g.w)
    act = [x]
    for node in r.nodes[1:]:
        if node["op"] == "batchnorm2d":
            a = act[node["in"][0]]
            r.w[node["name"] + ".running_mean"] = a.mean((0, 2, 3))
            r.w[node["name"] + ".running_var"] = a.var((0, 2, 3), unbiased=False)
        act.append(node_forward(r, node, act))
    return r


@torch.no_grad()
def all_logits(graphs, x):
    """[modules, images, classes]: each module network's logits."""
    return torch.stack([torch.cat([g.forward(x[i:i + 1000], None, 1) for i in range(0, len(x), 1000)])
                        for g in graphs])


def head_out(lg, h):
    w1, b1, w2, b2 = h
    return F.relu(F.relu(lg) @ w1.t() + b1) @ w2 + b2


def scores(lg, heads):
    return torch.stack([head_out(lg[k], heads[k]) for k in range(len(heads))], 1)


def accuracy(z, y):
    return 100.0 * float((z.argmax(1) == y).float().mean())


def refit(lg, y, heads, epochs=20, lr=0.002, batch=64):
    hs = [[t.clone().requires_grad_() for t in h] for h in heads]
    opt = torch.optim.Adam([t for h in hs for t in h], lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(lg.shape[1])
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(scores(lg[:, idx], hs), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [[t.detach() for t in h] for h in hs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("modules")
    ap.add_argument("--mix", metavar="OTHER")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    A = ModuleSet(a.modules)
    norm = A.info["normalize"]
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)

    def prep(x):
        return (torch.from_numpy(x.astype(np.float32) / 255.0) - mean) / std

    xtr, ytr = bs.load_fashion(a.data)
    xte = bs.read_idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"))[:, None]
    yte = torch.from_numpy(bs.read_idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    rng = np.random.RandomState(a.seed)
    cal = prep(xtr[rng.permutation(len(xtr))[:2048]])
    fit_idx = rng.permutation(len(xtr))[:10000]
    xfit, yfit = prep(xtr[fit_idx]), torch.from_numpy(ytr[fit_idx])
    xt = prep(xte)

    krr = 100.0 * sum(A.kept(k) for k in range(A.n)) / (A.n * A.total)
    print("%s: %d modules, mean KRR %.2f%%" % (a.modules, A.n, krr))
    lt, lf = all_logits(A.graphs, xt), all_logits(A.graphs, xfit)
    print("test accuracy, stored heads:                %.2f%%" % accuracy(scores(lt, A.heads), yte))
    print("test accuracy, heads refitted:              %.2f%%" % accuracy(scores(lt, refit(lf, yfit, A.heads)), yte))
    rg = [recalibrated(g, cal) for g in A.graphs]
    lt2, lf2 = all_logits(rg, xt), all_logits(rg, xfit)
    print("test accuracy, BN recalibrated:             %.2f%%" % accuracy(scores(lt2, A.heads), yte))
    print("test accuracy, BN recalibrated, refitted:   %.2f%%" % accuracy(scores(lt2, refit(lf2, yfit, A.heads)), yte))

    if a.mix:
        B = ModuleSet(a.mix)
        if B.n != A.n or B.total != A.total:
            raise SystemExit("%s: not a module set of the same model as %s" % (a.mix, a.modules))
        za, zb = scores(lt, A.heads), scores(all_logits(B.graphs, xt), B.heads)

        def mixed(from_b):
            z = torch.stack([zb[:, k] if from_b[k] else za[:, k] for k in range(A.n)], 1)
            kept = sum(B.kept(k) if from_b[k] else A.kept(k) for k in range(A.n))
            return accuracy(z, yte), 100.0 * kept / (A.n * A.total)

        print("\nA = %s, B = %s" % (a.modules, a.mix))
        print("A: %.2f%% at KRR %.2f%%; B: %.2f%% at KRR %.2f%%" % (*mixed([0] * A.n), *mixed([1] * A.n)))
        print("| module | KRR in A | KRR in B | A with B's module: acc (KRR) | B with A's module: acc (KRR) |")
        print("|---|---|---|---|---|")
        for k in range(A.n):
            one = [0] * A.n
            one[k] = 1
            rest = [1 - v for v in one]
            print("| %s | %.1f%% | %.1f%% | %.2f%% (%.1f%%) | %.2f%% (%.1f%%) |"
                  % (A.info["classes"][k], 100.0 * A.kept(k) / A.total, 100.0 * B.kept(k) / A.total,
                     *mixed(one), *mixed(rest)))


if __name__ == "__main__":
    main()
