"""Fashion-MNIST read straight from Debian's IDX files, for the tests' PyTorch
references (independent of HART's own reader)."""

import gzip
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx(name):
    """The array an IDX file holds (uint8, the shape its header gives)."""
    with gzip.open(FASHION / name) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
