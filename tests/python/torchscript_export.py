"""TorchScript fixtures for crates/hart-engine/tests/torchscript.rs.

Writes a small CNN with BatchNorm as scripted.pt (torch.jit.script) and
traced.pt (torch.jit.trace), the same weights' plain state dict saved with
torch.save as state_dict.pt (the usual mistake of handing HART a pickle), and
io.safetensors holding an input batch, the eval-mode logits and, in its
metadata, the parameter names PyTorch reports.

Usage: torchscript_export.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@torch.no_grad()
def randomise_bn(model, gen):
    # Fresh running statistics make eval-mode BatchNorm an identity, which
    # would hide a model that ignores them.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.copy_(0.5 + torch.rand(c, generator=gen))
            m.bias.copy_(0.2 * torch.randn(c, generator=gen))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torchscript_export.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = SmallCNN()
    randomise_bn(model, gen)
    model.eval()
    x = torch.rand((4, 3, 16, 16), generator=gen)
    with torch.no_grad():
        logits = model(x)
    torch.jit.save(torch.jit.script(model), str(out / "scripted.pt"))
    torch.jit.save(torch.jit.trace(model, x), str(out / "traced.pt"))
    torch.save(model.state_dict(), str(out / "state_dict.pt"))
    names = [n for n, _ in model.named_parameters()]
    save_file(
        {"input": x.contiguous(), "logits": logits.contiguous()},
        str(out / "io.safetensors"),
        metadata={"parameters": json.dumps(names)},
    )
    print(f"SmallCNN: {len(names)} parameters, max |logit| {logits.abs().max().item():.4g}")


if __name__ == "__main__":
    main()
