"""Shared fixtures of the Python package's tests (test_*.py here, run by
scripts/test.sh with .venv's pytest): a small CNN trained briefly in plain
PyTorch, the Fashion-MNIST test images read straight from their IDX files,
and the CLI binary the package must agree with."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fashion_idx import idx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fashion_test():
    """(uint8 N×1×28×28 images, int64 labels): the test split in file order."""
    return idx("t10k-images-idx3-ubyte.gz")[:, None].copy(), idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)


class SmallCnn(nn.Module):
    """Conv, BatchNorm, pooling, a residual add and two linear layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 14 * 14, 24)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = self.pool(h + torch.relu(self.conv2(h)))
        return self.head(torch.relu(self.fc(torch.flatten(h, 1))))


@pytest.fixture(scope="session")
def trained_cnn():
    """SmallCnn after 150 Adam steps on 3,000 training images (about 75% accurate)."""
    torch.manual_seed(0)
    x = torch.from_numpy(idx("train-images-idx3-ubyte.gz")[:3000, None].copy()).float() / 255
    y = torch.from_numpy(idx("train-labels-idx1-ubyte.gz")[:3000].astype(np.int64))
    model = SmallCnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        b = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def exported_cnn(trained_cnn):
    """trained_cnn as one hart.Model, exported once for the error cases."""
    import hart

    return hart.load(trained_cnn)


@pytest.fixture(scope="session")
def hart_bin():
    path = Path(os.environ.get("HART_BIN", ROOT / "target" / "release" / "hart"))
    assert path.exists(), f"{path} missing: build with cargo build --release"
    return path
