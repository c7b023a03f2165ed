#!/usr/bin/python3
"""Generates the ONNX fixtures for tests/test-onnx.c.

Trains three tiny CNNs for a few hundred steps on Fashion-MNIST (or on
synthetic images when the dataset is absent), exports them with
torch.onnx.export and records an input batch with PyTorch's outputs.

    /usr/bin/python3 tests/reference/make_onnx_models.py [outdir]

Outputs (tests/reference/onnx/ by default):
  plain-op13.onnx      conv-bn-relu-pool ×2, x.view(N,-1), linear      (BN folded by the exporter)
  plain-bn-op11.onnx   the same model, BatchNormalization kept (TrainingMode.PRESERVE), opset 11
  residual-op17.onnx   conv-bn-relu, residual block with Add, GAP, linear, Softmax at the end
  incept-op13.onnx     (x-mean)/std in the graph, 1×1/3×3/5×5 branches + Concat, avg pool,
                       GAP, dropout, MatMul + Add head
  golden.safetensors   "input" [4,1,28,28] raw pixels in [0,1] and "<model>.out" for each
                       model (logits; probabilities for residual-op17)
The safetensors file is written by hand (8-byte LE header length, JSON, raw f32).
"""
import gzip, json, os, struct, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx")
os.makedirs(OUT, exist_ok=True)
FMNIST = "/usr/share/datasets/fashion-mnist"


def load_data(n=4096):
    try:
        with gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
        with gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")) as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        return torch.tensor(x, dtype=torch.float32) / 255.0, torch.tensor(y, dtype=torch.long)
    except OSError:
        g = torch.Generator().manual_seed(1)
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
        for k in range(10):  # a class-dependent bright block makes it learnable
            x[y == k, :, 2 * k:2 * k + 6, 4:20] += 0.7
        return x.clamp(0, 1), y


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = self.features((x - 0.2860) / 0.3530) if self.norm_in_graph else self.features(x)
        return self.classifier(x.view(x.size(0), -1))

    norm_in_graph = False


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        y = F.relu(self.bn2(self.conv2(x)))
        y = self.bn3(self.conv3(y))
        x = F.relu(x + y)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class Incept(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.b1 = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(6, 4, 3, padding=1), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(6, 2, 5, padding=2), nn.ReLU())
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.drop = nn.Dropout(0.2)
        self.head_w = nn.Parameter(torch.randn(10, 10) * 0.1)
        self.head_b = nn.Parameter(torch.zeros(10))
        self.register_buffer("mean", torch.tensor([0.2860]).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([0.3530]).view(1, 1, 1, 1))

    def forward(self, x):
        x = self.stem((x - self.mean) / self.std)
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x)], 1)
        x = self.pool(x)
        x = x.mean((2, 3))
        x = self.drop(x)
        return torch.matmul(x, self.head_w) + self.head_b


def train(model, x, y, steps=300):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[-1024:]).argmax(1) == y[-1024:]).float().mean().item()
    return acc


def export(model, name, opset, batch, **kw):
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(model, batch, path, opset_version=opset, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, **kw)
    print(f"{name}: {os.path.getsize(path)} bytes")


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def main():
    x, y = load_data()
    batch = x[:4].clone()
    golden = {"input": batch}

    plain = Plain()
    print("plain acc", train(plain, x, y))
    with torch.no_grad():
        golden["plain-op13.out"] = plain(batch)
        golden["plain-bn-op11.out"] = plain(batch)
    export(plain, "plain-op13", 13, batch)
    export(plain, "plain-bn-op11", 11, batch, training=torch.onnx.TrainingMode.PRESERVE)

    res = Residual()
    print("residual acc", train(res, x, y))
    res_sm = nn.Sequential(res, nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        golden["residual-op17.out"] = res_sm(batch)
    export(res_sm, "residual-op17", 17, batch)

    inc = Incept()
    print("incept acc", train(inc, x, y))
    with torch.no_grad():
        golden["incept-op13.out"] = inc(batch)
    export(inc, "incept-op13", 13, batch)

    write_safetensors(os.path.join(OUT, "golden.safetensors"), golden)


if __name__ == "__main__":
    main()
