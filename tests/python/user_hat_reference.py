"""References for crates/hart-cli/tests/user_hat.rs: a user's own ReLU MLP
(784-256-128-10) trained in plain PyTorch, exported to ONNX for HART to
fine-tune, and every file HART writes back evaluated in the same module.

Usage:
  user_hat_reference.py export OUT_DIR
      trains Mlp for five epochs (Adam, lr 1e-3, seed 0, batch 64) on the
      Fashion-MNIST training images 10,000..29,999 (not the first 4,000 HART
      fine-tunes on), and writes OUT_DIR/mlp.onnx (torch.onnx.export,
      optimize=False so the initializers keep the state-dict names, any batch
      size) and OUT_DIR/pretrained.json {"accuracy"} on the first 2,000 test
      images.
  user_hat_reference.py accuracy N MODEL.onnx...
      loads each MODEL.onnx's initializers into Mlp by name (strict: every
      tensor of the state dict and nothing else) and prints one JSON object
      {MODEL: {"accuracy", "correct", "total"}} (accuracy a fraction) on the
      first N test images, eval mode.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fashion_idx import idx



class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def fashion(split, lo, hi):
    prefix = "train" if split == "train" else "t10k"
    x = idx(f"{prefix}-images-idx3-ubyte.gz")[lo:hi, None].copy()
    y = idx(f"{prefix}-labels-idx1-ubyte.gz")[lo:hi].astype(np.int64)
    # HART feeds imported graphs pixels in [0, 1], as torchvision's ToTensor.
    return torch.from_numpy(x).float() / 255, torch.from_numpy(y)


@torch.no_grad()
def accuracy(model, n):
    x, y = fashion("test", 0, n)
    model.eval()
    correct = int((model(x).argmax(1) == y).sum())
    return {"accuracy": correct / n, "correct": correct, "total": n}


def export(out):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = Mlp()
    x, y = fashion("train", 10_000, 30_000)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(5):
        for b in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    (out / "pretrained.json").write_text(json.dumps(accuracy(model, 2000)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (x[:2],),
            str(out / "mlp.onnx"),
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            input_names=["input"],
            output_names=["logits"],
            external_data=False,
            optimize=False,
            verbose=False,
        )


def load_onnx(path):
    import onnx
    from onnx import numpy_helper

    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(path).graph.initializer}
    model = Mlp()
    model.load_state_dict(inits, strict=True)
    return model


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        export(Path(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "accuracy":
        n = int(sys.argv[2])
        print(json.dumps({m: accuracy(load_onnx(m), n) for m in sys.argv[3:]}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
