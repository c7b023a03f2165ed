#!/usr/bin/python3
"""GradSplitter: two search steps on a tiny CNN, re-implemented in PyTorch.

Writes tests/reference/golden/gradsplitter_step.safetensors with the inputs
(images, labels, frozen weights, θ, heads) and the results of two joint steps
(masks + heads, fresh Adam): loss, module scores, θ gradients after the
straight-through clip, head gradients, and θ / head parameters after each
Adam step. tests/test-gradsplitter.c replays the steps with Cleave.

The tiny CNN (input 1×6×6, N = 3 classes):
  conv1(1→4) bn1 relu1 [site 0] → conv2(4→4) bn2 relu2 [site 1] → add(relu1, relu2)
  → maxpool 2 → conv3(4→5) bn3 relu3 [site 2] → global avg pool → fc(5→3)
Sites 0 and 1 meet in a residual add, so they share one θ (tie group 0).
Masks multiply the post-ReLU outputs; group g of the N·B batch uses module g's mask.
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

N, B, HID = 3, 4, 10
ALPHA, LR_MASK, LR_HEAD = 0.5, 0.05, 0.01
EPS = 1e-5


class Ste(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta):
        return (theta > 0).float()

    @staticmethod
    def backward(ctx, g):
        return g.clamp(-1.0, 1.0)


def hard_mask(theta):
    m = Ste.apply(theta)
    # A layer never ends empty: keep the highest-θ kernel (a constant, so the
    # straight-through gradient still reaches its θ).
    fix = torch.zeros_like(theta)
    for g in range(theta.shape[0]):
        if not bool((theta[g] > 0).any()):
            fix[g, int(theta[g].argmax())] = 1.0
    return m + fix


def bn(x, p, name):
    return F.batch_norm(x, p[name + ".running_mean"], p[name + ".running_var"],
                        p[name + ".weight"], p[name + ".bias"], False, 0.1, EPS)


def network(x, p, m0, m2):
    r0 = m0.repeat_interleave(B, 0)[:, :, None, None]
    r2 = m2.repeat_interleave(B, 0)[:, :, None, None]
    a = F.relu(bn(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1), p, "bn1")) * r0
    c = F.relu(bn(F.conv2d(a, p["conv2.weight"], p["conv2.bias"], padding=1), p, "bn2")) * r0
    d = F.max_pool2d(a + c, 2)
    e = F.relu(bn(F.conv2d(d, p["conv3.weight"], p["conv3.bias"], padding=1), p, "bn3")) * r2
    return F.linear(e.mean((2, 3)), p["fc.weight"], p["fc.bias"])


def scores_of(logits, heads):
    w1, b1, w2, b2 = heads
    lg = logits.view(N, B, N)
    cols = []
    for g in range(N):
        h = F.relu(lg[g])
        a1 = F.relu(h @ w1[g].t() + b1[g])
        cols.append(torch.sigmoid(a1 @ w2[g] + b2[g]))
    return torch.stack(cols, 1)          # [B, N]


def step(x, labels, p, thetas, heads, opt_m, opt_h):
    for t in thetas + heads:
        t.grad = None
    m0, m2 = hard_mask(thetas[0]), hard_mask(thetas[1])
    logits = network(x.repeat(N, 1, 1, 1), p, m0, m2)
    s = scores_of(logits, heads)
    # mean(m) over every site of every module: site 0 and site 1 both count.
    mean_m = torch.cat([m0.flatten(), m0.flatten(), m2.flatten()]).mean()
    loss = F.cross_entropy(s, labels) + ALPHA * mean_m
    loss.backward()
    out = {"loss": loss.detach().reshape(1), "scores": s.detach(),
           "theta_grad.0": thetas[0].grad.clone(), "theta_grad.2": thetas[1].grad.clone()}
    for name, t in zip(("w1", "b1", "w2", "b2"), heads):
        out["head_grad." + name] = t.grad.clone()
    opt_m.step()
    opt_h.step()
    out["theta.0"] = thetas[0].detach().clone()
    out["theta.2"] = thetas[1].detach().clone()
    for name, t in zip(("w1", "b1", "w2", "b2"), heads):
        out["head." + name] = t.detach().clone()
    return out


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def main():
    torch.manual_seed(1234)
    p = {}
    for name, cin, cout in (("conv1", 1, 4), ("conv2", 4, 4), ("conv3", 4, 5)):
        p[name + ".weight"] = torch.randn(cout, cin, 3, 3) * 0.6
        p[name + ".bias"] = torch.randn(cout) * 0.1
    for name, c in (("bn1", 4), ("bn2", 4), ("bn3", 5)):
        p[name + ".weight"] = 1 + 0.2 * torch.randn(c)
        p[name + ".bias"] = 0.3 * torch.randn(c) + 0.2
        p[name + ".running_mean"] = 0.2 * torch.randn(c)
        p[name + ".running_var"] = 0.5 + torch.rand(c)
    p["fc.weight"] = torch.randn(N, 5)
    p["fc.bias"] = torch.randn(N) * 0.5

    x1, x2 = torch.randn(B, 1, 6, 6), torch.randn(B, 1, 6, 6)
    y1, y2 = torch.tensor([0, 2, 1, 2]), torch.tensor([1, 0, 2, 1])
    theta0 = torch.tensor([[0.3, -0.2, 0.5, 0.1],
                           [0.02, 0.4, -0.03, 0.2],
                           [-0.1, 0.25, 0.35, -0.4]], requires_grad=True)
    theta2 = torch.tensor([[0.2, 0.1, -0.3, 0.4, 0.03],
                           [-0.2, -0.1, -0.05, -0.3, -0.6],   # empty row: keeps kernel 2
                           [0.1, -0.2, 0.3, 0.02, 0.2]], requires_grad=True)
    w1 = (torch.rand(N, HID, N) * 2 - 1) / N ** 0.5
    b1 = (torch.rand(N, HID) * 2 - 1) / N ** 0.5
    w2 = (torch.rand(N, HID) * 2 - 1) / HID ** 0.5
    b2 = (torch.rand(N) * 2 - 1) / HID ** 0.5
    heads = [t.clone().requires_grad_(True) for t in (w1, b1, w2, b2)]

    tensors = dict(p)
    tensors.update({"x1": x1, "labels1": y1.float(), "x2": x2, "labels2": y2.float(),
                    "theta.0": theta0.detach().clone(), "theta.2": theta2.detach().clone(),
                    "head.w1": w1, "head.b1": b1, "head.w2": w2, "head.b2": b2})

    thetas = [theta0, theta2]
    opt_m = torch.optim.Adam(thetas, lr=LR_MASK)
    opt_h = torch.optim.Adam(heads, lr=LR_HEAD)
    for k, (x, y) in enumerate(((x1, y1), (x2, y2)), 1):
        for name, t in step(x, y, p, thetas, heads, opt_m, opt_h).items():
            tensors["step%d.%s" % (k, name)] = t

    meta = {"alpha": repr(ALPHA), "lr_mask": repr(LR_MASK), "lr_head": repr(LR_HEAD),
            "n": str(N), "batch": str(B), "torch": torch.__version__}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "gradsplitter_step.safetensors")
    write_safetensors(out, tensors, meta)
    print("wrote", out)


if __name__ == "__main__":
    main()
