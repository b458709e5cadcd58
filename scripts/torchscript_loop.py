"""The plain PyTorch loop a user would write for a bit-flip sweep, for
`hart bench sweep`'s TorchScript row.

  torchscript_loop.py export OUT.pt [TRAIN.safetensors]
      writes a torch.jit.script 784-256-128-10 ReLU MLP (seeded weights),
      trained for one epoch of SGD on TRAIN's images when given: a sweep of
      a random-weight model (10% accuracy) measures little a user runs.
  torchscript_loop.py time MODEL.pt IMAGES.safetensors FAULTS.csv [DEVICE]
      flips each (param, index, bit) of the CSV in place, evaluates every
      image in one batch, restores, and prints one JSON line: seconds (the
      loop only), flips and the correct count of each flip; model and
      images on DEVICE (a torch.device name, default cpu).

IMAGES.safetensors and TRAIN.safetensors hold `x` (float32 N×1×28×28, as
HART feeds the model) and `y` (int64 labels).
"""

import csv
import json
import sys
import time

import torch
from torch import nn

DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_file(path):
    """The tensors of a safetensors file, read with torch alone: the GPU
    machines scripts/gpu-check.sh runs on have torch but not necessarily
    the safetensors package."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[meta["dtype"]])
        tensors[name] = flat.reshape(meta["shape"])
    return tensors


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def export(out, train=None):
    torch.manual_seed(0)
    model = Mlp()
    if train is not None:
        data = load_file(train)
        x, y = data["x"], data["y"]
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for i in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    torch.jit.script(model.eval()).save(out)


@torch.no_grad()
def time_loop(model_path, images_path, faults_path, device="cpu"):
    model = torch.jit.load(model_path, map_location=device).eval()
    data = load_file(images_path)
    x, y = data["x"].to(device), data["y"].to(device)
    params = dict(model.named_parameters())
    with open(faults_path) as f:
        flips = [(r["param"], int(r["index"]), int(r["bit"])) for r in csv.DictReader(f)]
    correct = []
    start = time.perf_counter()
    for name, index, bit in flips:
        bits = params[name].data.view(-1).view(torch.int32)
        old = bits[index].item()
        bits[index] = old ^ (1 << bit) if bit < 31 else old ^ -(1 << 31)
        correct.append(int((model(x).argmax(1) == y).sum()))
        bits[index] = old
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "flips": len(flips), "correct": correct}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(*sys.argv[2:4])
    else:
        time_loop(*sys.argv[2:6])
