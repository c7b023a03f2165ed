#!/usr/bin/python3
"""PyTorch side of bench/run.sh: the same CNN, batch and timing rule as bench-cnn.c."""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


def make_model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 10))


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    torch.manual_seed(7)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    train_t, infer_t = [], []
    model.train()
    for i in range(-3, iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if i >= 0:
            train_t.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        for i in range(-3, iters):
            t0 = time.perf_counter()
            model(x).sum().item()
            if i >= 0:
                infer_t.append(time.perf_counter() - t0)
    tt, ti = statistics.median(train_t), statistics.median(infer_t)
    print(json.dumps({"engine": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
                      "batch": batch, "iters": iters,
                      "train_images_per_s": round(batch / tt, 1), "infer_images_per_s": round(batch / ti, 1)}))


if __name__ == "__main__":
    main()
