#!/usr/bin/python3
"""PyTorch side of bench/run.sh: the same CNN, batch and timing rule as bench-cnn.c.

Usage: bench_torch.py [BATCH] [ITERS] [--device cpu|cuda] [--no-tf32]
--device cuda runs on the first CUDA GPU (bench/gpu-run.sh); --no-tf32 turns
off TF32 in cuDNN convolutions and cuBLAS, which PyTorch allows for cuDNN by
default, so the GPU does plain fp32 arithmetic as Cleave's OpenCL kernels do."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def make_model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 10))


# PyTorch 2.9 replaced allow_tf32 with fp32_precision and refuses to read one
# after the other was set, so use the new settings where they exist.
def _new_tf32_api():
    return hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision")


def set_fp32_only():
    if _new_tf32_api():
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def tf32_state():
    try:
        if _new_tf32_api():
            return {"conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
                    "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision}
        return {"cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}
    except RuntimeError as e:
        return {"tf32_state": str(e)[:200]}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("batch", nargs="?", type=int, default=128)
    ap.add_argument("iters", nargs="?", type=int, default=30)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--no-tf32", action="store_true")
    return ap.parse_args()


def main():
    args = parse_args()
    batch, iters = args.batch, args.iters
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("bench_torch.py: --device cuda, but torch.cuda.is_available() is False")
        if args.no_tf32:
            set_fp32_only()

    # Queued GPU work must be inside the timed interval, as bench-cnn's
    # closing download/finish puts it inside Cleave's.
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    torch.manual_seed(7)
    model = make_model().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = (torch.rand(batch, 1, 28, 28) * 2 - 1).to(dev)
    y = torch.randint(0, 10, (batch,)).to(dev)
    train_t, infer_t = [], []
    model.train()
    sync()
    for i in range(-3, iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        sync()
        if i >= 0:
            train_t.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        for i in range(-3, iters):
            t0 = time.perf_counter()
            model(x).sum().item()
            sync()
            if i >= 0:
                infer_t.append(time.perf_counter() - t0)
    tt, ti = statistics.median(train_t), statistics.median(infer_t)
    out = {"engine": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
           "batch": batch, "iters": iters,
           "train_images_per_s": round(batch / tt, 1), "infer_images_per_s": round(batch / ti, 1),
           "device": args.device}
    if dev.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(dev)
        out.update(tf32_state())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
