"""Data as the engine takes it: a named or path data set read by the engine,
or ``(x, y)`` arrays / tensors / a ``torch.utils.data.Dataset`` read once
into the engine's form (uint8 or float32 NCHW pixels, integer labels)."""

from __future__ import annotations

import os

import numpy as np

from . import _hart
from ._errors import InvalidArgumentError

# A torch Dataset is read whole into memory; past this many bytes of pixels
# it is refused rather than filling the machine.
MAX_DATASET_BYTES = 2 << 30


def as_data(data, *, split="test", limit=None, data_dir=None, image_size=224, name="arrays"):
    """The ``_hart.Data`` for any data argument HART accepts."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer (got {limit!r})")
    if isinstance(data, _hart.Data):
        return data
    if isinstance(data, (str, os.PathLike)):
        return _hart.Data.named(
            os.fspath(data),
            split=split,
            limit=limit,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            image_size=image_size,
        )
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        return from_arrays(x, y, limit=limit, name=name)
    try:
        import torch.utils.data as tud

        if isinstance(data, tud.Dataset):
            return from_torch_dataset(data, limit=limit, name=name)
    except ImportError:  # pragma: no cover - torch is imported by the package
        pass
    raise InvalidArgumentError(
        "data must be a data set name or path, an (x, y) pair of arrays or tensors, "
        f"or a torch.utils.data.Dataset (got {type(data).__name__})"
    )


def _numpy(a, what):
    if hasattr(a, "detach"):  # a torch.Tensor: its memory, no copy on the CPU
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as e:  # noqa: BLE001 - any unconvertible object
        raise InvalidArgumentError(f"{what}: cannot read as an array ({e})") from None


def pixels(x):
    """NCHW pixels as the engine keeps them, from images as N×C×H×W or N×H×W:
    uint8 in 0..255 as bytes (fed to models as x/255, as torchvision's
    ToTensor does), floats in [0, 1] as float32 values fed as they are (no
    rounding to bytes). Normalised floats, outside [0, 1], are refused: the
    normalisation belongs inside the model."""
    x = _numpy(x, "x")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise InvalidArgumentError(f"x: expected N×C×H×W or N×H×W images, got shape {tuple(x.shape)}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidArgumentError(f"x: expected uint8 or float images, got {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidArgumentError("x: holds NaN or infinite values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise InvalidArgumentError(
            f"x: float images must lie in [0, 1] (range {x.min():g} to {x.max():g}); "
            "put the normalisation inside the model"
        )
    return x


def labels(y, n):
    y = _numpy(y, "y").reshape(-1) if np.ndim(_numpy(y, "y")) else _numpy(y, "y")
    if y.ndim != 1 or len(y) != n:
        raise InvalidArgumentError(f"y: expected {n} labels (one per image), got shape {tuple(np.shape(y))}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidArgumentError(f"y: expected integer class labels, got {y.dtype}")
    if n and y.min() < 0:
        raise InvalidArgumentError(f"y: negative label {int(y.min())}")
    return np.ascontiguousarray(y, dtype=np.int64)


def from_arrays(x, y, *, limit=None, name="arrays", num_classes=None):
    x = pixels(x)
    if limit is not None:
        x = x[:limit]
        y = y[:limit]
    y = labels(y, len(x))
    if len(x) == 0:
        raise InvalidArgumentError("data: no images")
    classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    return _hart.Data.arrays(name, x.reshape(-1), tuple(int(s) for s in x.shape), y, classes)


def from_torch_dataset(ds, *, limit=None, name="dataset"):
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise InvalidArgumentError("data: the Dataset is empty")
    xs, ys, size = [], [], 0
    for i in range(n):
        x, y = ds[i][:2]
        x = pixels(_numpy(x, f"item {i}")[None])
        size += x.nbytes
        if size > MAX_DATASET_BYTES:
            raise InvalidArgumentError(
                f"data: the Dataset's first {i + 1} images exceed {MAX_DATASET_BYTES / 2**30:g} GiB; pass limit="
            )
        if xs and (x.dtype != xs[0].dtype or x.shape[1:] != xs[0].shape[1:]):
            raise InvalidArgumentError(
                f"data: item {i} is a {x.dtype} image of {x.shape[1:]}, item 0 a {xs[0].dtype} one of {xs[0].shape[1:]}"
            )
        xs.append(x)
        ys.append(int(y))
    return from_arrays(np.concatenate(xs), np.asarray(ys, dtype=np.int64), name=name)
