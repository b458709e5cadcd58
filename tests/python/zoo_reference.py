"""Reference models for crates/hart-engine/tests/zoo_reference.rs.

Writes, for each model NAME, the PyTorch state dict as NAME.safetensors and a
fixed input batch with PyTorch's eval-mode logits for it as
NAME_io.safetensors, so the Rust test can check that HART's zoo rebuilds the
same network from the file.

Usage: zoo_reference.py OUT_DIR [NAME ...]   (default: all models)

Imports are unconditional: a Python environment without torch, torchvision,
timm or safetensors must make the calling test fail, not pass vacuously.
"""

import math
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import nn


def cifar_resnet18():
    m = torchvision.models.resnet18(num_classes=10, weights=None)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


# name -> (constructor, input shape)
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=1000, weights=None), (2, 3, 224, 224)),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=1000, weights=None), (2, 3, 224, 224)),
    "resnet18-cifar": (cifar_resnet18, (4, 3, 32, 32)),
    "deit-tiny": (lambda: timm.create_model("deit_tiny_patch16_224", pretrained=False), (2, 3, 224, 224)),
}


def images(shape, gen):
    """Smooth random images in [0, 1]. I.i.d. pixel noise averages out in the
    global pooling, leaving logits that barely depend on the input; blobs of
    colour keep images distinguishable, as real ones are."""
    n, c, h, w = shape
    coarse = torch.rand((n, c, max(2, h // 16), max(2, w // 16)), generator=gen)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.8 * x + 0.2 * torch.rand(shape, generator=gen)).clamp(0, 1).contiguous()


@torch.no_grad()
def randomise(model, shape, gen):
    """Makes every tensor matter. A fresh BatchNorm (mean 0, var 1, weight 1,
    bias 0) or LayerNorm is nearly an identity and zero biases hide a dropped
    bias term, so a wrong normalisation path would still match. Running
    statistics are calibrated on a separate batch first (then jittered) so
    activations stay in range and logits depend clearly on the input; DeiT's
    0.02-std init leaves its blocks near identities, so it gets 1/sqrt(fan_in)
    weights instead."""

    def randn(shape_):
        return torch.randn(shape_, generator=gen)

    def rand(shape_):
        return torch.rand(shape_, generator=gen)

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.normal_(0, 1 / math.sqrt(m.weight[0].numel()), generator=gen)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics
        bn.weight.copy_(0.5 + rand(bn.num_features))
        bn.bias.copy_(0.2 * randn(bn.num_features))
    if bns:
        model.train()
        model(images(shape, gen))
        for bn in bns:
            bn.momentum = 0.1
            bn.running_mean.add_(0.05 * randn(bn.num_features) * bn.running_var.sqrt())
            bn.running_var.mul_(0.8 + 0.4 * rand(bn.num_features))
            bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1.0 + 0.2 * randn(m.weight.shape))
            m.bias.copy_(0.1 * randn(m.bias.shape))
        elif isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
            m.bias.copy_(0.05 * randn(m.bias.shape))
    for name, p in model.named_parameters():
        if name in ("cls_token", "pos_embed"):
            p.copy_(0.2 * randn(p.shape))
    model.eval()


def export(name, out: Path, seed: int):
    ctor, shape = MODELS[name]
    torch.manual_seed(seed)
    model = ctor()
    gen = torch.Generator().manual_seed(seed + 1000)
    randomise(model, shape, gen)
    x = images(shape, gen)
    with torch.no_grad():
        logits = model(x)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}.safetensors"), metadata={"format": "pt"})
    save_file({"input": x, "logits": logits.contiguous()}, str(out / f"{name}_io.safetensors"))
    spread = (logits - logits.mean(0)).abs().max().item()
    print(f"{name}: {len(state)} tensors, max |logit| {logits.abs().max().item():.4g}, input-dependent spread {spread:.4g}")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: zoo_reference.py OUT_DIR [NAME ...]")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or list(MODELS)
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    for i, name in enumerate(MODELS):
        if name in names:
            export(name, out, seed=i)


if __name__ == "__main__":
    main()
