#!/usr/bin/python3
"""Writes the PyTorch golden files that tests/test-ops.c compares against.

Run with Debian's interpreter (the one that sees python3-torch):
    /usr/bin/python3 tests/reference/make_golden.py

Every case is one small .safetensors file in tests/reference/golden/: the
float32 inputs, the outputs and the gradients, and the op's parameters as
strings in __metadata__. Inputs are drawn in float32; the reference results
are computed in float64 from those same float32 values, so the golden data
carries no float32 rounding of its own and the C tests measure only theirs.
The safetensors writer is a few lines here because the safetensors Python
package is not installed.
"""

import json
import os
import struct

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def save(name, tensors, **meta):
    """tensors: dict name -> torch tensor (written as F32, in dict order)."""
    header = {}
    blobs = []
    offset = 0
    for key, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    path = os.path.join(OUT, name + ".safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def rnd(*shape):
    """float32 values, returned as float64 leaf tensors that need grad."""
    return torch.randn(*shape, dtype=torch.float32).double().requires_grad_(True)


def conv_case(name, n, ci, h, w, co, k, stride, pad, groups, bias):
    x = rnd(n, ci, h, w)
    wt = rnd(co, ci // groups, k, k)
    b = rnd(co) if bias else None
    y = F.conv2d(x, wt, b, stride=stride, padding=pad, groups=groups)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    t = {"x": x, "w": wt}
    if bias:
        t["b"] = b
    t.update({"y": y, "dy": dy, "dx": x.grad, "dw": wt.grad})
    if bias:
        t["db"] = b.grad
    save(name, t, stride=stride, pad=pad, groups=groups)


def batchnorm_cases():
    eps, momentum = 1e-5, 0.1
    # training: batch statistics, running stats updated
    x = rnd(4, 3, 5, 5)
    with torch.no_grad():
        x.mul_(2.0).add_(torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1))
    gamma, beta = rnd(3), rnd(3)
    rm = torch.randn(3, dtype=torch.float32).double()
    rv = torch.rand(3, dtype=torch.float32).double() + 0.5
    rm_after, rv_after = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm_after, rv_after, gamma, beta, training=True, momentum=momentum, eps=eps)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    mean = x.detach().mean(dim=(0, 2, 3))
    var = x.detach().var(dim=(0, 2, 3), unbiased=False)
    save("batchnorm_train", {
        "x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
        "y": y, "running_mean_after": rm_after, "running_var_after": rv_after,
        "save_mean": mean, "save_invstd": 1.0 / torch.sqrt(var + eps),
        "dy": dy, "dx": x.grad, "dgamma": gamma.grad, "dbeta": beta.grad,
    }, eps=eps, momentum=momentum)

    # eval: running statistics are constants
    x = rnd(3, 4, 3, 3)
    gamma, beta = rnd(4), rnd(4)
    rm = torch.randn(4, dtype=torch.float32).double()
    rv = torch.rand(4, dtype=torch.float32).double() + 0.5
    y = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save("batchnorm_eval", {
        "x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
        "y": y, "dy": dy, "dx": x.grad, "dgamma": gamma.grad, "dbeta": beta.grad,
    }, eps=eps)


def unary_case(name, fn, x):
    y = fn(x)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save(name, {"x": x, "y": y, "dy": dy, "dx": x.grad})


def pool_case(name, fn, x, kernel, stride, pad):
    y = fn(x, kernel, stride, pad)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save(name, {"x": x, "y": y, "dy": dy, "dx": x.grad}, kernel=kernel, stride=stride, pad=pad)


def linear_case():
    x, w, b = rnd(5, 7), rnd(4, 7), rnd(4)
    y = F.linear(x, w, b)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save("linear", {"x": x, "w": w, "b": b, "y": y, "dy": dy, "dx": x.grad, "dw": w.grad, "db": b.grad})


def add_concat_mask_cases():
    a, b = rnd(2, 3, 4, 4), rnd(2, 3, 4, 4)
    save("add", {"a": a, "b": b, "y": a + b, "y_scaled": 0.5 * a - 2.0 * b}, alpha=0.5, beta=-2.0)

    a, b = rnd(2, 3, 4, 4), rnd(2, 5, 4, 4)
    y = torch.cat([a, b], dim=1)
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save("concat", {"a": a, "b": b, "y": y, "dy": dy, "da": a.grad, "db": b.grad})

    groups, per = 3, 2
    x = rnd(groups * per, 4, 3, 3)
    m = rnd(groups, 4)
    y = x * m.repeat_interleave(per, dim=0)[:, :, None, None]
    dy = torch.randn(y.shape, dtype=torch.float32).double()
    y.backward(dy)
    save("mask", {"x": x, "m": m, "y": y, "dy": dy, "dx": x.grad, "dm": m.grad})


def softmax_ce_case():
    logits = rnd(6, 5)
    with torch.no_grad():
        logits.mul_(3.0)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    save("softmax_ce", {"logits": logits, "labels": labels.double(), "loss": loss.reshape(1),
                        "dlogits": logits.grad})


def optimiser_cases():
    lr, momentum, wd = 0.1, 0.9, 0.01
    p = rnd(3, 4).detach().requires_grad_(True)
    p0 = p.detach().clone()
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=wd)
    grads, params, bufs = [], [], []
    for _ in range(3):
        g = torch.randn(p.shape, dtype=torch.float32).double()
        p.grad = g.clone()
        opt.step()
        grads.append(g)
        params.append(p.detach().clone())
        bufs.append(opt.state[p]["momentum_buffer"].clone())
    t = {"param": p0}
    for i in range(3):
        t["grad%d" % i] = grads[i]
        t["param%d" % i] = params[i]
        t["buf%d" % i] = bufs[i]
    save("sgd", t, lr=lr, momentum=momentum, weight_decay=wd, steps=3)

    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.01
    p = rnd(3, 4).detach().requires_grad_(True)
    p0 = p.detach().clone()
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    t = {"param": p0}
    for i in range(3):
        g = torch.randn(p.shape, dtype=torch.float32).double()
        p.grad = g.clone()
        opt.step()
        t["grad%d" % i] = g
        t["param%d" % i] = p.detach().clone()
        t["m%d" % i] = opt.state[p]["exp_avg"].clone()
        t["v%d" % i] = opt.state[p]["exp_avg_sq"].clone()
    save("adam", t, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, steps=3)


def network_case():
    """conv(1->4, 3x3, pad 1) - bn - relu - maxpool 2 - flatten - linear(64->3), batch 4."""
    torch.manual_seed(7)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 3),
    ).double()
    with torch.no_grad():
        for prm in net.parameters():
            prm.copy_(prm.float().double())
        net[1].weight.copy_(torch.rand(4, dtype=torch.float32).double() + 0.5)
        net[1].bias.copy_(torch.randn(4, dtype=torch.float32).double() * 0.1)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float32).double()
    labels = torch.tensor([0, 2, 1, 2])
    names = {"0.weight": "conv.weight", "0.bias": "conv.bias", "1.weight": "bn.weight",
             "1.bias": "bn.bias", "5.weight": "fc.weight", "5.bias": "fc.bias"}
    t = {"x": x, "labels": labels.double()}
    for k, v in net.named_parameters():
        t[names[k]] = v.detach().clone()
    t["bn.running_mean"] = net[1].running_mean.clone()
    t["bn.running_var"] = net[1].running_var.clone()

    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    logits = net(x)
    loss = F.cross_entropy(logits, labels)
    opt.zero_grad()
    loss.backward()
    t["logits"] = logits
    t["loss"] = loss.reshape(1)
    for k, v in net.named_parameters():
        t["grad." + names[k]] = v.grad.clone()
    opt.step()
    for k, v in net.named_parameters():
        t["after." + names[k]] = v.detach().clone()
    t["after.bn.running_mean"] = net[1].running_mean.clone()
    t["after.bn.running_var"] = net[1].running_var.clone()
    save("network", t, lr=0.1, momentum=0.9, weight_decay=1e-4, bn_momentum=0.1, eps=1e-5)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    conv_case("conv2d_k1", 2, 4, 5, 5, 6, 1, 1, 0, 1, True)
    conv_case("conv2d_k1_s2", 2, 4, 6, 6, 3, 1, 2, 0, 1, True)
    conv_case("conv2d_k3_s2_g2", 2, 4, 7, 7, 6, 3, 2, 1, 2, True)
    conv_case("conv2d_k3_p1", 3, 3, 6, 5, 5, 3, 1, 1, 1, True)
    conv_case("conv2d_k5_s2_nobias", 2, 3, 9, 9, 4, 5, 2, 2, 1, False)
    batchnorm_cases()
    x = rnd(3, 4, 5, 5)
    with torch.no_grad():
        x[x.abs() < 1e-3] = 0.5  # keep relu's kink away from the data
    unary_case("relu", torch.relu, x)
    unary_case("sigmoid", torch.sigmoid, rnd(3, 4, 5, 5))
    pool_case("maxpool_k2_s2", F.max_pool2d, rnd(2, 3, 6, 7), 2, 2, 0)
    pool_case("maxpool_k3_s2_p1", F.max_pool2d, rnd(2, 3, 7, 7), 3, 2, 1)
    # small integers make ties, where the gradient must go to the first maximum
    ties = torch.randint(0, 3, (2, 2, 6, 6)).double().requires_grad_(True)
    pool_case("maxpool_ties", F.max_pool2d, ties, 3, 1, 1)
    pool_case("avgpool_k2_s2", F.avg_pool2d, rnd(2, 3, 6, 7), 2, 2, 0)
    pool_case("avgpool_k3_s2_p1", F.avg_pool2d, rnd(2, 3, 7, 7), 3, 2, 1)
    x = rnd(3, 5, 4, 4)
    unary_case("global_avgpool", lambda v: v.mean(dim=(2, 3)), x)
    linear_case()
    add_concat_mask_cases()
    softmax_ce_case()
    optimiser_cases()
    network_case()


if __name__ == "__main__":
    main()
