#!/usr/bin/python3
"""Golden files for tests/test-net.c: whole small networks (plain, residual,
inception-like) run in PyTorch 1.13 from the same architecture JSON that Cleave
reads (with "squeeze": the MobileNet/ShuffleNet/EfficientNet ops — ReLU6
clip, depthwise conv, hardsigmoid, hardswish and SiLU as products,
squeeze-excitation, channel slices and shuffle, ceil-mode pools, average
pool without the padding, softmax). Records input, labels, initial parameters, training-mode logits, loss,
parameter gradients, parameters and running statistics after one SGD step,
and, for grouped channel masks in eval mode, the masked logits and the mask
gradients. Run: /usr/bin/python3 tests/reference/make_net_golden.py"""
import json
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden")

NETS = {
    "plain": {"input": [1, 8, 8], "nodes": [
        {"name": "c0", "op": "conv2d", "out_channels": 4, "kernel": 3, "pad": 1},
        {"name": "b0", "op": "batchnorm2d"},
        {"name": "r0", "op": "relu"},
        {"name": "p0", "op": "maxpool2d", "kernel": 2},
        {"name": "c1", "op": "conv2d", "out_channels": 6, "kernel": 3, "stride": 2, "pad": 1},
        {"name": "b1", "op": "batchnorm2d"},
        {"name": "r1", "op": "relu"},
        {"name": "fl", "op": "flatten"},
        {"name": "d0", "op": "dropout", "p": 0.0},
        {"name": "fc", "op": "linear", "out_features": 5}]},
    "res": {"input": [3, 6, 6], "nodes": [
        {"name": "c0", "op": "conv2d", "out_channels": 4, "kernel": 3, "pad": 1},
        {"name": "b0", "op": "batchnorm2d"},
        {"name": "r0", "op": "relu"},
        {"name": "c1", "op": "conv2d", "out_channels": 4, "kernel": 3, "pad": 1, "bias": False},
        {"name": "b1", "op": "batchnorm2d"},
        {"name": "r1", "op": "relu"},
        {"name": "add", "op": "add", "inputs": ["r1", "r0"]},
        {"name": "ap", "op": "avgpool2d", "kernel": 2},
        {"name": "gap", "op": "global_avgpool"},
        {"name": "fc", "op": "linear", "out_features": 3}]},
    "cat": {"input": [2, 7, 7], "nodes": [
        {"name": "a", "op": "conv2d", "inputs": ["input"], "out_channels": 3, "kernel": 1},
        {"name": "ra", "op": "relu"},
        {"name": "b", "op": "conv2d", "inputs": ["input"], "out_channels": 2, "kernel": 3, "pad": 1},
        {"name": "rb", "op": "relu"},
        {"name": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 5, "kernel": 5, "pad": 2},
        {"name": "rc", "op": "relu"},
        {"name": "cat", "op": "concat", "inputs": ["ra", "rb", "rc"]},
        {"name": "mp", "op": "maxpool2d", "kernel": 3, "stride": 2, "pad": 1},
        {"name": "fl", "op": "flatten"},
        {"name": "fc", "op": "linear", "out_features": 4},
        {"name": "sg", "op": "sigmoid"}]},
    "squeeze": {"input": [3, 9, 9], "nodes": [
        {"name": "c0", "op": "conv2d", "out_channels": 8, "kernel": 3, "pad": 1},
        {"name": "b0", "op": "batchnorm2d"},
        {"name": "r0", "op": "clip", "min": 0.0, "max": 6.0},
        {"name": "dw", "op": "conv2d", "out_channels": 8, "kernel": 3, "pad": 1, "groups": 8, "bias": False},
        {"name": "b1", "op": "batchnorm2d"},
        {"name": "hs", "op": "hardsigmoid", "alpha": 1.0 / 6.0, "beta": 0.5},
        {"name": "hsw", "op": "mul", "inputs": ["b1", "hs"]},
        {"name": "gap", "op": "global_avgpool", "keepdims": True},
        {"name": "fc1", "op": "conv2d", "out_channels": 2, "kernel": 1},
        {"name": "r1", "op": "relu"},
        {"name": "fc2", "op": "conv2d", "out_channels": 8, "kernel": 1},
        {"name": "sc", "op": "hardsigmoid", "alpha": 0.2, "beta": 0.5},
        {"name": "se", "op": "mul", "inputs": ["hsw", "sc"]},
        {"name": "sg", "op": "sigmoid"},
        {"name": "silu", "op": "mul", "inputs": ["se", "sg"]},
        {"name": "sl1", "op": "slice", "inputs": ["silu"], "start": 0, "channels": 3},
        {"name": "sl2", "op": "slice", "inputs": ["silu"], "start": 3, "channels": 5},
        {"name": "c2", "op": "conv2d", "out_channels": 5, "kernel": 1},
        {"name": "r2", "op": "relu"},
        {"name": "cat", "op": "concat", "inputs": ["sl1", "r2"]},
        {"name": "sh", "op": "channel_shuffle", "groups": 2},
        {"name": "mp", "op": "maxpool2d", "kernel": 2, "ceil_mode": True},
        {"name": "ap1", "op": "avgpool2d", "kernel": 2, "ceil_mode": True},
        {"name": "ap2", "op": "avgpool2d", "kernel": 3, "stride": 1, "pad": 1, "count_include_pad": False},
        {"name": "fl", "op": "flatten"},
        {"name": "fc", "op": "linear", "out_features": 5},
        {"name": "sm", "op": "softmax"}]},
}


def pool_out(size, k, st, p, ceil_mode):
    """PyTorch's pooling output size."""
    if not ceil_mode:
        return (size + 2 * p - k) // st + 1
    out = -(-(size + 2 * p - k) // st) + 1
    if (out - 1) * st >= size + p:
        out -= 1
    return out


def build_params(arch, gen):
    """Parameters with PyTorch state_dict names, shapes inferred like Cleave does."""
    c, h, w = arch["input"]
    shapes = {"input": (c, h, w)}
    params = {}
    prev = "input"
    for n in arch["nodes"]:
        ins = n.get("inputs", [prev])
        s = shapes[ins[0]]
        op = n["op"]
        if op == "conv2d":
            k, st, p = n["kernel"], n.get("stride", 1), n.get("pad", 0)
            oc = n["out_channels"]
            params[n["name"] + ".weight"] = torch.randn(oc, s[0] // n.get("groups", 1), k, k, generator=gen) * 0.4
            if n.get("bias", True):
                params[n["name"] + ".bias"] = torch.randn(oc, generator=gen) * 0.1
            shapes[n["name"]] = (oc, (s[1] + 2 * p - k) // st + 1, (s[2] + 2 * p - k) // st + 1)
        elif op == "batchnorm2d":
            ch = s[0]
            params[n["name"] + ".weight"] = 1 + 0.2 * torch.randn(ch, generator=gen)
            params[n["name"] + ".bias"] = 0.1 * torch.randn(ch, generator=gen)
            params[n["name"] + ".running_mean"] = 0.1 * torch.randn(ch, generator=gen)
            params[n["name"] + ".running_var"] = 1 + 0.5 * torch.rand(ch, generator=gen)
            shapes[n["name"]] = s
        elif op in ("maxpool2d", "avgpool2d"):
            k, st, p, cm = n["kernel"], n.get("stride", n["kernel"]), n.get("pad", 0), n.get("ceil_mode", False)
            shapes[n["name"]] = (s[0], pool_out(s[1], k, st, p, cm), pool_out(s[2], k, st, p, cm))
        elif op == "global_avgpool":
            shapes[n["name"]] = (s[0], 1, 1) if n.get("keepdims") else (s[0],)
        elif op == "slice":
            shapes[n["name"]] = (n["channels"],) + tuple(s[1:])
        elif op == "flatten":
            f = 1
            for d in s:
                f *= d
            shapes[n["name"]] = (f,)
        elif op == "linear":
            params[n["name"] + ".weight"] = torch.randn(n["out_features"], s[0], generator=gen) * 0.3
            params[n["name"] + ".bias"] = torch.randn(n["out_features"], generator=gen) * 0.1
            shapes[n["name"]] = (n["out_features"],)
        elif op == "concat":
            shapes[n["name"]] = (sum(shapes[i][0] for i in ins),) + tuple(s[1:])
        else:
            shapes[n["name"]] = s
        prev = n["name"]
    return params


def mask_sites(arch):
    """conv → [bn] → [relu]: the node whose output a mask multiplies (Cleave's rule)."""
    nodes = arch["nodes"]
    names = [n["name"] for n in nodes]
    consumers = {}
    prev = "input"
    for n in nodes:
        for i in n.get("inputs", [prev]):
            consumers.setdefault(i, []).append(n)
        prev = n["name"]
    sites = []
    for n in nodes:
        if n["op"] != "conv2d":
            continue
        cur = n
        while len(consumers.get(cur["name"], [])) == 1:
            nxt = consumers[cur["name"]][0]
            if nxt["op"] == "batchnorm2d" and cur["op"] == "conv2d":
                cur = nxt
            elif nxt["op"] == "relu" or (nxt["op"] == "clip" and nxt.get("min") == 0.0):
                cur = nxt
                break
            else:
                break
        sites.append((n["name"], cur["name"], n["out_channels"]))
    return sites


def forward(arch, params, x, training, masks=None, groups=1):
    acts = {"input": x}
    prev = "input"
    site_at = {}
    if masks is not None:
        for conv, node, ch in mask_sites(arch):
            site_at[node] = masks[conv]
    for n in arch["nodes"]:
        ins = [acts[i] for i in n.get("inputs", [prev])]
        a = ins[0]
        op, nm = n["op"], n["name"]
        if op == "conv2d":
            y = F.conv2d(a, params[nm + ".weight"], params.get(nm + ".bias"),
                         stride=n.get("stride", 1), padding=n.get("pad", 0), groups=n.get("groups", 1))
        elif op == "batchnorm2d":
            y = F.batch_norm(a, params[nm + ".running_mean"], params[nm + ".running_var"],
                             params[nm + ".weight"], params[nm + ".bias"], training=training,
                             momentum=0.1, eps=1e-5)
        elif op == "relu":
            y = F.relu(a)
        elif op == "sigmoid":
            y = torch.sigmoid(a)
        elif op == "clip":
            y = torch.clamp(a, n["min"], n["max"])
        elif op == "hardsigmoid":
            y = torch.clamp(n["alpha"] * a + n["beta"], 0, 1)
        elif op == "mul":
            y = ins[0] * ins[1]
        elif op == "softmax":
            y = torch.softmax(a, dim=1)
        elif op == "slice":
            y = a[:, n["start"]:n["start"] + n["channels"]]
        elif op == "channel_shuffle":
            g = n["groups"]
            y = a.reshape(a.shape[0], g, a.shape[1] // g, *a.shape[2:]).transpose(1, 2).reshape(a.shape)
        elif op == "maxpool2d":
            y = F.max_pool2d(a, n["kernel"], n.get("stride", n["kernel"]), n.get("pad", 0),
                             ceil_mode=n.get("ceil_mode", False))
        elif op == "avgpool2d":
            y = F.avg_pool2d(a, n["kernel"], n.get("stride", n["kernel"]), n.get("pad", 0),
                             ceil_mode=n.get("ceil_mode", False), count_include_pad=n.get("count_include_pad", True))
        elif op == "global_avgpool":
            y = a.mean(dim=(2, 3), keepdim=n.get("keepdims", False))
        elif op == "flatten":
            y = a.reshape(a.shape[0], -1)
        elif op == "dropout":
            y = a
        elif op == "linear":
            y = F.linear(a, params[nm + ".weight"], params[nm + ".bias"])
        elif op == "add":
            y = ins[0] + ins[1]
        elif op == "concat":
            y = torch.cat(ins, dim=1)
        else:
            raise ValueError(op)
        if nm in site_at:
            m = site_at[nm]  # [groups, C]
            b = y.shape[0] // groups
            y = y * m.repeat_interleave(b, dim=0)[:, :, None, None]
        acts[nm] = y
        prev = nm
    return acts[prev]


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    off = 0
    for name, t in tensors.items():
        data = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, arch) in enumerate(sorted(NETS.items())):
        gen = torch.Generator().manual_seed(100 + seed)
        params = build_params(arch, gen)
        n_out = [n for n in arch["nodes"] if n["op"] == "linear"][-1]["out_features"]
        batch = 4
        x = torch.randn(batch, *arch["input"], generator=gen)
        y = torch.randint(0, n_out, (batch,), generator=gen)
        out = {"x": x, "labels": y.float()}
        for k, v in params.items():
            out["init." + k] = v.clone()
        # training-mode forward, CE loss, backward, one SGD step (momentum, wd)
        p = {k: v.clone().requires_grad_(not (k.endswith("running_mean") or k.endswith("running_var")))
             for k, v in params.items()}
        logits = forward(arch, p, x, True)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        out["train.logits"] = logits
        out["train.loss"] = loss.reshape(1)
        trainable = [k for k in p if p[k].requires_grad]
        for k in trainable:
            out["grad." + k] = p[k].grad
        for k in p:
            if not p[k].requires_grad:
                out["after." + k] = p[k].detach().clone()  # running stats updated by the forward
        with torch.no_grad():
            for k in trainable:
                g = p[k].grad + 1e-4 * p[k]
                out["after." + k] = p[k] - 0.05 * g  # first SGD step: buf = g
        # eval mode with grouped masks (2 groups), gradient w.r.t. the masks
        groups = 2
        gm = torch.Generator().manual_seed(7 + seed)
        masks = {}
        for conv, node, ch in mask_sites(arch):
            m = (torch.rand(groups, ch, generator=gm) > 0.3).float()
            masks[conv] = m.requires_grad_(True)
        xe = torch.cat([x, x], dim=0)
        pe = {k: v.clone() for k, v in params.items()}
        le = forward(arch, pe, xe, False, masks, groups)
        we = torch.randn(le.shape, generator=gm)
        (le * we).sum().backward()
        out["mask.logits"] = le
        out["mask.dout"] = we
        for conv, node, ch in mask_sites(arch):
            out["mask.value." + conv] = masks[conv].detach()
            out["mask.grad." + conv] = masks[conv].grad
        write_safetensors(os.path.join(OUT, f"net-{name}.safetensors"), out,
                          {"graph": json.dumps(arch), "lr": "0.05", "momentum": "0.9", "weight_decay": "1e-4",
                           "generator": "tests/reference/make_net_golden.py"})
        print("wrote", name)


if __name__ == "__main__":
    main()
