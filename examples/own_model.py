"""The README's "Harden your own model" example: a small PyTorch CNN (conv,
BatchNorm, a residual block, pooling, linear) trained briefly in plain
PyTorch and exported to ONNX for HART to fine-tune, then each model HART
writes back loaded into the same PyTorch module and evaluated.

Usage (from the repository root):
  .venv/bin/python examples/own_model.py export own.onnx [--images 4000] [--epochs 3] [--test-images 10000]
      trains OwnCnn for --epochs epochs on the first --images Fashion-MNIST
      training images (Adam, lr 1e-3, seed 0), prints its accuracy on the
      first --test-images test images and writes own.onnx with torch.onnx.export.
  .venv/bin/python examples/own_model.py accuracy MODEL.onnx [--test-images 10000]
      loads MODEL.onnx's initializers into OwnCnn by name (every tensor of
      its state dict must be there) and prints the eval-mode accuracy on the
      first --test-images test images: the figure `hart train --eval-limit N`
      prints for the same file.
"""

import argparse
import gzip
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


class OwnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))  # residual block
        x = F.relu(self.conv3(self.pool(x)))
        return self.fc(torch.flatten(x, 1))


def fashion(split, n):
    prefix = "train" if split == "train" else "t10k"
    read = lambda f: gzip.open(f"{DATA}/{prefix}-{f}.gz").read()  # noqa: E731
    x = np.frombuffer(read("images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    y = np.frombuffer(read("labels-idx1-ubyte"), np.uint8, offset=8)[:n].astype(np.int64)
    # HART feeds an imported graph pixels in [0, 1], as here.
    return torch.from_numpy(x.copy()).float() / 255, torch.from_numpy(y)


@torch.no_grad()
def accuracy(model, n):
    x, y = fashion("test", n)
    model.eval()
    pred = torch.cat([model(xb).argmax(1) for xb in x.split(1000)])
    correct = int((pred == y).sum())
    return f"{100 * correct / len(y):.2f}% ({correct}/{len(y)})"


def export(path, images, epochs, test_images):
    torch.manual_seed(0)
    model = OwnCnn()
    x, y = fashion("train", images)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    print(f"PyTorch: test accuracy {accuracy(model, test_images)}")
    model.eval()
    warnings.simplefilter("ignore")  # the exporter's deprecation chatter
    torch.onnx.export(
        model,
        (x[:2],),
        path,
        # Any batch size, not only the exported one.
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
        input_names=["input"],
        output_names=["logits"],
        external_data=False,
        # Keep the BatchNorm nodes (the default folds them into conv weights):
        # HART trains them in training mode, and the initializers keep the
        # module's state-dict names, so `accuracy` can load them back.
        optimize=False,
        verbose=False,
    )
    print(f"wrote {path}")


def load_onnx(path):
    import onnx
    from onnx import numpy_helper

    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(path).graph.initializer}
    model = OwnCnn()
    state = model.state_dict()
    # ONNX carries no num_batches_tracked, which eval mode does not read.
    missing = [k for k in state if k not in inits and not k.endswith("num_batches_tracked")]
    if missing:
        sys.exit(f"{path} lacks {missing}: was it exported from OwnCnn with optimize=False?")
    model.load_state_dict({k: inits[k] for k in state if k in inits}, strict=False)
    return model


def main():
    args = argparse.ArgumentParser(usage=__doc__)
    args.add_argument("command", choices=["export", "accuracy"])
    args.add_argument("model")
    args.add_argument("--images", type=int, default=4000)
    args.add_argument("--epochs", type=int, default=3)
    args.add_argument("--test-images", type=int, default=10_000)
    a = args.parse_args()
    if a.command == "export":
        export(a.model, a.images, a.epochs, a.test_images)
    else:
        print(f"PyTorch: {a.model}: test accuracy {accuracy(load_onnx(a.model), a.test_images)}")


if __name__ == "__main__":
    main()
