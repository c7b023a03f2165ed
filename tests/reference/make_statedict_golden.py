#!/usr/bin/python3
"""PyTorch state_dicts of the paper's three architectures, written as
safetensors the way `safetensors.torch.save_file(model.state_dict())` would,
with an input batch and PyTorch's eval-mode logits, for tests/test-model.c:
Cleave must open them with `--arch simcnn|rescnn|incecnn:w=…` and give the
same logits. The module classes below follow the reference implementations'
structure and parameter names (conv_i = Sequential(Conv2d, BatchNorm2d),
fc_i = Linear); written here, at a reduced width.
Run: /usr/bin/python3 tests/reference/make_statedict_golden.py"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def conv_bn(cin, cout, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=(k - 1) // 2), nn.BatchNorm2d(cout))


class SimCNN(nn.Module):
    def __init__(self, w, n, in_c, hw):
        super().__init__()
        ch = [int(round(c * w)) for c in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)]
        prev = in_c
        for i, c in enumerate(ch):
            setattr(self, f"conv_{i}", conv_bn(prev, c))
            prev = c
        self.hw = hw
        hidden = int(round(4096 * w))
        self.dropout_13 = nn.Dropout()
        self.fc_13 = nn.Linear(prev, hidden)
        self.dropout_14 = nn.Dropout()
        self.fc_14 = nn.Linear(hidden, hidden)
        self.fc_15 = nn.Linear(hidden, n)

    def forward(self, x):
        size = self.hw
        for i in range(13):
            x = F.relu(getattr(self, f"conv_{i}")(x))
            if i in (1, 3, 6, 9, 12) and size >= 2:  # Cleave skips pools on maps under 2×2
                x = F.max_pool2d(x, 2)
                size //= 2
        x = x.flatten(1)
        x = F.relu(self.fc_13(self.dropout_13(x)))
        x = F.relu(self.fc_14(self.dropout_14(x)))
        return self.fc_15(x)


class ResCNN(nn.Module):
    def __init__(self, w, n, in_c, hw):
        super().__init__()
        ch = [int(round(c * w)) for c in (64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)]
        prev = in_c
        for i, c in enumerate(ch):
            setattr(self, f"conv_{i}", conv_bn(prev, c))
            prev = c
        self.hw = hw
        self.dropout_12 = nn.Dropout()
        self.fc_12 = nn.Linear(prev, n)

    def forward(self, x):
        size = self.hw
        for i in range(12):
            if i in (2, 6, 10):
                res = x
            x = F.relu(getattr(self, f"conv_{i}")(x))
            if i in (3, 7, 11):
                x = x + res
            if i in (1, 4, 5, 8, 9) and size >= 2:
                x = F.max_pool2d(x, 2)
                size //= 2
        if size > 1:
            x = x.mean(dim=(2, 3))
        return self.fc_12(self.dropout_12(x.flatten(1)))


class InceCNN(nn.Module):
    def __init__(self, w, n, in_c, hw):
        super().__init__()
        s = lambda c: int(round(c * w))
        self.conv_0 = conv_bn(in_c, s(64))
        self.conv_1 = conv_bn(s(64), s(128))
        self.conv_2 = conv_bn(s(128), s(256))
        prev = s(256)
        idx = 3
        for branch in ((256, 256, 64), (512, 512, 64), (512, 512, 64)):
            for c, k in zip(branch, (1, 3, 5)):
                setattr(self, f"conv_{idx}", conv_bn(prev, s(c), k))
                idx += 1
            prev = sum(s(c) for c in branch)
        self.hw = hw
        self.dropout_12 = nn.Dropout(0.4)
        self.fc_12 = nn.Linear(prev, n)

    def forward(self, x):
        size = self.hw
        for i in range(3):
            x = F.relu(getattr(self, f"conv_{i}")(x))
        x = F.max_pool2d(x, 2)
        size //= 2
        for blk in range(3):
            outs = [F.relu(getattr(self, f"conv_{3 + 3 * blk + k}")(x)) for k in range(3)]
            x = torch.cat(outs, 1)
            if blk < 2 and size >= 2:
                x = F.max_pool2d(x, 2)
                size //= 2
        x = x.mean(dim=(2, 3))
        return self.fc_12(self.dropout_12(x))


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata} if metadata else {}
    blobs, off = [], 0
    for name, t in tensors.items():
        if t.dtype == torch.int64:
            data, dt = t.contiguous().numpy().tobytes(), "I64"
        else:
            data, dt = t.detach().contiguous().to(torch.float32).numpy().tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.manual_seed(0)
    cases = [("simcnn", SimCNN, 0.0625, 1, 28), ("rescnn", ResCNN, 0.0625, 3, 32), ("incecnn", InceCNN, 0.0625, 1, 28)]
    for name, cls, w, in_c, hw in cases:
        m = cls(w, 10, in_c, hw)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):  # non-trivial running statistics
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
        m.eval()
        x = torch.randn(3, in_c, hw, hw)
        with torch.no_grad():
            y = m(x)
        # The state_dict as PyTorch saves it, num_batches_tracked (int64) included.
        write_safetensors(os.path.join(OUT, f"statedict-{name}.safetensors"), dict(m.state_dict()), None)
        write_safetensors(os.path.join(OUT, f"statedict-{name}-io.safetensors"), {"x": x, "logits": y},
                          {"arch": f"{name}:w={w}", "input": f"{in_c}x{hw}x{hw}"})
        print("wrote", name)


if __name__ == "__main__":
    main()
