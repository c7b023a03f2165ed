#!/usr/bin/python3
"""Exports torchvision classification families to ONNX, with PyTorch's outputs,
for tests/test-onnx.c.

Every model has 10 classes, seeded random weights and random BatchNorm
statistics (so that folding or skipping a batchnorm shows), and is exported
with torch.onnx.export at the opset listed for it; opsets 11 to 17 are each
covered at least once.

    /usr/bin/python3 tests/reference/make_torchvision_onnx.py            # small set
    /usr/bin/python3 tests/reference/make_torchvision_onnx.py --full DIR # full-size set

The small set (tests/reference/onnx/families/ by default, committed) builds
each family from torchvision's own classes with fewer channels or stages,
where its constructor allows it, so that the operators of the family are
all there in a file of a few hundred kB. The full-size set is the families
as torchvision's builders make them (tens of MB each), written only into a
build directory.

Outputs, in the output directory:
  <name>.onnx             one model per entry of families.json
  families.json           [{"name", "family", "file", "opset", "input": [N,C,H,W]}, plus "refused": the
                          words Cleave's refusal must contain, for a family it does not open]
  families.safetensors    "<name>.input" (pixels in [0,1]) and "<name>.out" (logits)
"""
import functools, json, os, struct, sys
import torch
import torch.nn as nn
import torchvision
from torchvision.models import (resnet, vgg, regnet, mobilenetv2, mobilenetv3, shufflenetv2, densenet, mnasnet,
                                efficientnet, squeezenet, alexnet as _alexnet_fn)

googlenet_mod = sys.modules["torchvision.models.googlenet"]
inception_mod = sys.modules["torchvision.models.inception"]

torch.set_num_threads(2)


def randomize_bn(model, seed):
    """Random affine parameters and running statistics for every BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
    return model


# ---- the small set: each family's classes, fewer channels ----

class SmallConv(googlenet_mod.BasicConv2d):
    """GoogLeNet's conv block at 1/8 of the width (the image's 3 channels kept)."""

    def __init__(self, in_channels, out_channels, **kw):
        super().__init__(in_channels if in_channels == 3 else in_channels // 8, out_channels // 8, **kw)


class SmallInception(googlenet_mod.Inception):
    def __init__(self, *channels, conv_block=None):
        super().__init__(*[c // 8 for c in channels], conv_block=conv_block)


def small_googlenet():
    m = googlenet_mod.GoogLeNet(num_classes=10, aux_logits=False, transform_input=False, init_weights=False,
                                blocks=[SmallConv, SmallInception, googlenet_mod.InceptionAux])
    m.fc = nn.Linear(1024 // 8, 10)
    return m


class SmallInceptionConv(inception_mod.BasicConv2d):
    """Inception v3's conv block at 1/16 of the width (the image's 3 channels kept)."""

    def __init__(self, in_channels, out_channels, **kw):
        super().__init__(in_channels if in_channels == 3 else in_channels // 16, out_channels // 16, **kw)


def small_inception_v3():
    blocks = [SmallInceptionConv] + [functools.partial(b, conv_block=SmallInceptionConv) for b in (
        inception_mod.InceptionA, inception_mod.InceptionB, inception_mod.InceptionC, inception_mod.InceptionD,
        inception_mod.InceptionE, inception_mod.InceptionAux)]
    m = inception_mod.Inception3(num_classes=10, aux_logits=False, transform_input=False, inception_blocks=blocks,
                                 init_weights=False)
    m.fc = nn.Linear(2048 // 16, 10)
    return m


def small_vgg11_bn():
    m = vgg.VGG(vgg.make_layers([8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"], batch_norm=True),
                num_classes=10)
    m.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 16), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 10))
    return m


def small_mobilenet_v3():
    setting, _ = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    return mobilenetv3.MobileNetV3(setting[:6], last_channel=64, num_classes=10)


def small_efficientnet():
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    return efficientnet.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=last)


def small_regnet(se_ratio=None):
    params = regnet.BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=se_ratio)
    return regnet.RegNet(params, num_classes=10, stem_width=8)


SMALL = [
    # name, family, builder, input [N,C,H,W], opset
    ("mobilenet_v2-s-op11", "mobilenet_v2",
     lambda: mobilenetv2.MobileNetV2(num_classes=10, width_mult=0.25,
                                     inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2]]),
     [2, 3, 32, 32], 11),
    ("mobilenet_v3_small-s-op12", "mobilenet_v3_small", small_mobilenet_v3, [2, 3, 32, 32], 12),
    ("mobilenet_v3_small-s-op14", "mobilenet_v3_small", small_mobilenet_v3, [2, 3, 32, 32], 14),
    ("shufflenet_v2-s-op11", "shufflenet_v2_x0_5",
     lambda: shufflenetv2.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), [2, 3, 64, 64], 11),
    ("shufflenet_v2-s-op13", "shufflenet_v2_x0_5",
     lambda: shufflenetv2.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), [2, 3, 64, 64], 13),
    ("densenet-s-op15", "densenet121",
     lambda: densenet.DenseNet(growth_rate=4, block_config=(2, 10), num_init_features=8, bn_size=2, num_classes=10),
     [2, 3, 32, 32], 15),
    ("googlenet-s-op16", "googlenet", small_googlenet, [2, 3, 64, 64], 16),
    ("efficientnet_b0-s-op17", "efficientnet_b0", small_efficientnet, [2, 3, 32, 32], 17),
    ("regnet_x-s-op13", "regnet_x_400mf", small_regnet, [2, 3, 32, 32], 13),
    ("regnet_y-s-op16", "regnet_x_400mf", lambda: small_regnet(0.25), [2, 3, 32, 32], 16),
    ("vgg11_bn-s-op13", "vgg11_bn", small_vgg11_bn, [1, 3, 224, 224], 13),
    ("inception_v3-s-op12", "inception_v3", small_inception_v3, [2, 3, 75, 75], 12),
]


# ---- the full-size set: torchvision's builders ----

def resnet18_cifar():
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


M = torchvision.models
FULL = [
    ("resnet18-op13", "resnet18", lambda: M.resnet18(num_classes=10), [2, 3, 224, 224], 13),
    ("resnet18_cifar-op11", "resnet18", resnet18_cifar, [2, 3, 32, 32], 11),
    ("resnext50_32x4d-op12", "resnext50_32x4d", lambda: M.resnext50_32x4d(num_classes=10), [1, 3, 224, 224], 12),
    ("regnet_x_400mf-op13", "regnet_x_400mf", lambda: M.regnet_x_400mf(num_classes=10), [2, 3, 224, 224], 13),
    ("vgg11_bn-op14", "vgg11_bn", lambda: M.vgg11_bn(num_classes=10), [1, 3, 224, 224], 14),
    ("vgg16-op15", "vgg16", lambda: M.vgg16(num_classes=10), [1, 3, 224, 224], 15),
    ("squeezenet1_1-op16", "squeezenet1_1", lambda: M.squeezenet1_1(num_classes=10), [2, 3, 224, 224], 16),
    ("alexnet-op17", "alexnet", lambda: M.alexnet(num_classes=10), [2, 3, 224, 224], 17),
    ("mobilenet_v2-op11", "mobilenet_v2", lambda: M.mobilenet_v2(num_classes=10), [2, 3, 224, 224], 11),
    ("mobilenet_v3_small-op13", "mobilenet_v3_small", lambda: M.mobilenet_v3_small(num_classes=10),
     [2, 3, 224, 224], 13),
    ("shufflenet_v2_x0_5-op13", "shufflenet_v2_x0_5", lambda: M.shufflenet_v2_x0_5(num_classes=10),
     [2, 3, 224, 224], 13),
    ("densenet121-op14", "densenet121", lambda: M.densenet121(num_classes=10), [1, 3, 224, 224], 14),
    ("googlenet-op15", "googlenet", lambda: M.googlenet(num_classes=10, aux_logits=False, init_weights=True),
     [2, 3, 224, 224], 15),
    ("efficientnet_b0-op16", "efficientnet_b0", lambda: M.efficientnet_b0(num_classes=10), [2, 3, 224, 224], 16),
    ("inception_v3-op13", "inception_v3", lambda: M.inception_v3(num_classes=10, aux_logits=False, init_weights=False),
     [1, 3, 299, 299], 13),
    ("mnasnet0_5-op12", "mnasnet0_5", lambda: M.mnasnet0_5(num_classes=10), [2, 3, 224, 224], 12),
    ("wide_resnet50_2-op17", "wide_resnet50_2", lambda: M.wide_resnet50_2(num_classes=10), [1, 3, 224, 224], 17),
]


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


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def main():
    args = sys.argv[1:]
    table, out = SMALL, os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx", "families")
    if args and args[0] == "--full":
        table, out = FULL, args[1]
        args = args[2:]
    only = set(args)
    os.makedirs(out, exist_ok=True)
    manifest, golden = [], {}
    for i, (name, family, build, shape, opset, *refused) in enumerate(table):
        if only and name not in only:
            continue
        torch.manual_seed(1000 + i)
        model = randomize_bn(build(), 2000 + i).eval()
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(3000 + i))
        with torch.no_grad():
            y = model(x)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, x, path + ".tmp", opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        os.replace(path + ".tmp", path)
        golden[name + ".input"] = x
        golden[name + ".out"] = y
        manifest.append({"name": name, "family": family, "file": name + ".onnx", "opset": opset, "input": shape})
        if refused:
            manifest[-1]["refused"] = refused[0]
        print(f"{name}: {os.path.getsize(path)} bytes, logits |max| {y.abs().max().item():.3g}", flush=True)
    write_safetensors(os.path.join(out, "families.safetensors"), golden)
    write_json(os.path.join(out, "families.json"), manifest)


if __name__ == "__main__":
    main()
