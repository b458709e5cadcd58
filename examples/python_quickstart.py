"""The README's "From Python" example: a PyTorch CNN trained briefly in plain
PyTorch, its exponent MSBs swept by HART, its Hessian trace measured.
Run: .venv/bin/python examples/python_quickstart.py"""

import gzip

import numpy as np
import torch
from torch import nn

import hart


def fashion(split, n):
    prefix = "train" if split == "train" else "t10k"
    read = lambda f: gzip.open(f"/usr/share/datasets/fashion-mnist/{prefix}-{f}.gz").read()  # noqa: E731
    x = np.frombuffer(read("images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    y = np.frombuffer(read("labels-idx1-ubyte"), np.uint8, offset=8)[:n].astype(np.int64)
    return torch.from_numpy(x.copy()).float() / 255, torch.from_numpy(y)


torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(8 * 14 * 14, 32), nn.ReLU(), nn.Linear(32, 10),
)
x, y = fashion("train", 5000)
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
for step in range(300):
    b = torch.randint(0, len(x), (64,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x[b]), y[b]).backward()
    opt.step()
model.eval()

m = hart.load(model)  # exported by HART on first use
res = hart.sweep(m, "fashion-mnist", limit=500, bits="exponent-msb", progress=False)
print(m)
print(res)
print(res.per_tensor.to_string(index=False))
print(hart.hessian(m, "fashion-mnist", split="test", limit=1000, progress=False))
