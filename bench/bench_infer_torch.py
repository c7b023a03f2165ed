#!/usr/bin/python3
"""PyTorch side of bench/infer.sh, and the maker of its ONNX files.

Usage:
  bench_infer_torch.py export DIR            write DIR/bench.onnx (the benchmark CNN) and
                                             DIR/resnet18-cifar.onnx (torchvision's ResNet-18,
                                             CIFAR stem: 3x3 stride-1 conv, no max-pool, 10 classes)
  bench_infer_torch.py time MODEL BATCH ITERS
                                             MODEL: bench, resnet18-cifar, or a Cleave .safetensors
                                             model (run by bench-split.py's graph interpreter)
Random weights and BatchNorm statistics (seed 0); inference in eval mode under
torch.inference_mode, 3 warm-up batches, median of ITERS, one JSON line."""
import importlib.util
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def build(name):
    torch.manual_seed(0)
    if name == "bench":
        spec = importlib.util.spec_from_file_location("bench_torch", os.path.join(HERE, "bench_torch.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return randomize_bn(mod.make_model()).eval(), (1, 28, 28)
    if name == "resnet18-cifar":
        import torchvision
        m = torchvision.models.resnet18(num_classes=10)
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        return randomize_bn(m).eval(), (3, 32, 32)
    raise SystemExit(f"unknown model {name}")


class CleaveGraphModel(nn.Module):
    """A Cleave model file run with bench-split.py's interpreter of its graph."""

    def __init__(self, path):
        super().__init__()
        spec = importlib.util.spec_from_file_location("bench_split", os.path.join(HERE, "bench-split.py"))
        bs = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bs)
        weights, meta = bs.read_safetensors(path)
        self.graph = bs.Graph(meta["cleave.graph"], weights)
        self.shape = tuple(json.loads(meta["cleave.input"]))

    def forward(self, x):
        return self.graph.forward(x, None, 1)


def export(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name in ("bench", "resnet18-cifar"):
        model, chw = build(name)
        path = os.path.join(out_dir, name + ".onnx")
        torch.onnx.export(model, torch.zeros(1, *chw), path, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        print(path)


def time_model(name, batch, iters):
    if name.endswith(".safetensors"):
        model = CleaveGraphModel(name).eval()
        chw = model.shape
    else:
        model, chw = build(name)
    x = torch.rand(batch, *chw) * 2 - 1
    t = []
    with torch.inference_mode():
        for i in range(-3, iters):
            t0 = time.perf_counter()
            model(x)
            if i >= 0:
                t.append(time.perf_counter() - t0)
    print(json.dumps({"engine": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
                      "batch": batch, "iters": iters,
                      "infer_images_per_s": round(batch / statistics.median(t), 1)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        export(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "time":
        time_model(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
