"""``hart.train`` / ``hart.fine_tune``: the engine's training of a user's own
model (``hart train --model``), and the trained tensors put back into the
caller's ``torch.nn.Module`` by their state-dict names."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import weakref

import numpy as np
import pandas as pd
import torch

from . import _hart
from ._data import as_data
from ._errors import InvalidArgumentError, ModelError
from ._model import Model, load
from ._progress import Bar

#: The ``hart train`` regulariser options and their CLI defaults.
REGULARIZER_DEFAULTS = dict(
    regularizer="none",
    hessian_lambda=0.01,
    hessian_method="gauss-newton",
    hessian_warmup=0,
    hessian_probes=1,
    hessian_every=1,
    hessian_layers="all",
    hessian_selective=False,
    hessian_reading="lanczos",
    hessian_top_p=50,
    hessian_diag_frac=0.01,
    hessian_batch=0,
    audit_readings=0,
    sam_rho=0.05,
    asam=False,
    fd_sigma=0.01,
    noise_std=0.05,
    noise_kind="additive",
    scope="all",
    params=None,
    storage="int8",
    bit_error_rate=0.01,
    clip_weights=None,
    clip_relative=False,
)

#: The ``hart train`` optimiser options and their CLI defaults.
TRAINING_DEFAULTS = dict(
    epochs=5,
    batch_size=64,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=0.0,
    clip_grad_norm=None,
    seed=0,
    device="cpu",
)

_KNOWN = set(REGULARIZER_DEFAULTS) | set(TRAINING_DEFAULTS)


class TrainLog:
    """What a training run logged: ``log`` is the CLI's ``train.json`` as a
    dict; ``epochs`` a DataFrame of its per-epoch rows (``epoch, loss,
    accuracy, seconds`` and the regulariser's columns); ``test_accuracy`` the
    accuracy after training on the evaluation images (None when skipped);
    ``out`` the trained model file (None when it was written to a temporary
    directory)."""

    def __init__(self, log, out):
        self.log = log
        self.out = out
        self.epochs = pd.DataFrame(
            [{k: v for k, v in e.items() if k not in ("readings", "audit")} for e in log["epochs"]]
        )
        self.test = log.get("test")
        self.test_accuracy = None if self.test is None else self.test["accuracy"]

    def __repr__(self):
        last = self.log["epochs"][-1]
        test = "" if self.test is None else f", test accuracy {100 * self.test_accuracy:.2f}% ({self.test['correct']}/{self.test['total']})"
        return (
            f"hart.TrainLog({len(self.log['epochs'])} epochs of {self.log['regularizer']['kind']} training on "
            f"{self.log['samples']} images, last loss {last['loss']:.4f}, train accuracy {100 * last['accuracy']:.2f}%{test})"
        )


def train(model, data="fashion-mnist", **options):
    """Trains a model from a fresh initialisation of its graph, as
    ``hart train --model FILE --reinit``: PyTorch's default initialisation
    per layer type (ONNX graphs and state dicts; not TorchScript). Takes the
    options of :func:`fine_tune`; returns what it returns."""
    return _train(model, data, reinit=True, **options)


def fine_tune(
    model,
    data="fashion-mnist",
    *,
    split="train",
    limit=None,
    data_dir=None,
    image_size=224,
    eval_data=None,
    eval_limit=10_000,
    freeze=None,
    out=None,
    inplace=False,
    example_input=None,
    progress=True,
    **options,
):
    """Trains a model from its own weights, as ``hart train --model FILE``,
    with any regulariser (HAT ``regularizer="hessian"``, ``noise``, ``sam``,
    ``fd-hessian``, ``randbet``, or none).

    ``model``: a ``torch.nn.Module`` (exported by HART as ``hart.load`` does:
    ONNX, else TorchScript, in eval mode, so dropout does not act while it
    trains; BatchNorm trains on batch statistics and moves its running
    statistics), a model file, or a :class:`hart.Model`. ``data``: the
    training data as :func:`hart.sweep` takes it (``split`` defaults to
    ``train``). After training, the first ``eval_limit`` images of
    ``eval_data`` are evaluated (default: the test split of a named
    ``data``; none for arrays unless ``eval_data`` is given; ``eval_limit=0``
    skips it). ``freeze``: a regex of tensors held fixed (``--freeze``).
    Every other keyword is the ``hart train`` option of that name:
    ``epochs, batch_size, optimizer, lr, momentum, weight_decay,
    clip_grad_norm, seed, device`` and ``regularizer, hessian_lambda,
    hessian_method, hessian_warmup, hessian_probes, hessian_every,
    hessian_layers, hessian_selective, hessian_reading, hessian_top_p,
    hessian_diag_frac, hessian_batch, audit_readings, sam_rho, asam,
    fd_sigma, noise_std, noise_kind, scope, params, storage, bit_error_rate,
    clip_weights, clip_relative``, with the CLI's defaults.

    ``out``: where the trained model file goes (the export's or the file's
    format, ``.safetensors`` for ONNX too, with ``train.json`` beside it as
    the CLI writes them); by default a temporary file.

    Returns, for a module, the trained ``torch.nn.Module``: a deep copy of
    ``model`` (``inplace=True``: ``model`` itself) whose state dict holds the
    engine's trained tensors, BatchNorm running statistics included
    (``num_batches_tracked`` counts the training steps, as PyTorch's would);
    for a file, a :class:`hart.Model` of the trained file. Either carries
    the run's :class:`hart.TrainLog` as ``.hart_log``.
    """
    return _train(
        model,
        data,
        reinit=False,
        split=split,
        limit=limit,
        data_dir=data_dir,
        image_size=image_size,
        eval_data=eval_data,
        eval_limit=eval_limit,
        freeze=freeze,
        out=out,
        inplace=inplace,
        example_input=example_input,
        progress=progress,
        **options,
    )


def _train(
    model,
    data,
    *,
    reinit,
    split="train",
    limit=None,
    data_dir=None,
    image_size=224,
    eval_data=None,
    eval_limit=10_000,
    freeze=None,
    out=None,
    inplace=False,
    example_input=None,
    progress=True,
    **options,
):
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise InvalidArgumentError(f"unknown training option {unknown[0]!r} (the hart train options are {', '.join(sorted(_KNOWN))})")
    if not isinstance(eval_limit, int) or eval_limit < 0:
        raise InvalidArgumentError(f"eval_limit must be a non-negative integer (got {eval_limit!r})")
    regularizer = {**REGULARIZER_DEFAULTS, **{k: v for k, v in options.items() if k in REGULARIZER_DEFAULTS}}
    training = {**TRAINING_DEFAULTS, **{k: v for k, v in options.items() if k in TRAINING_DEFAULTS}}
    m = load(model, example_input)
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    test = _eval_data(eval_data, data, eval_limit, data_dir, image_size)
    path = m._resolve(d)
    keep = None
    if out is None:
        keep = tempfile.mkdtemp(prefix="hart-train-")
        out = os.path.join(keep, "trained" + os.path.splitext(path)[1])
    out = os.fspath(out)
    try:
        with Bar("train", progress) as bar:
            log = json.loads(
                _hart.train(
                    (path, m.arch, m.normalize),
                    d,
                    out,
                    training=training,
                    regularizer=regularizer,
                    test=test,
                    reinit=reinit,
                    freeze=freeze,
                    progress=bar,
                )
            )
        if m.module is None:
            result = TrainLog(log, None if keep else out)
            trained = Model(out, arch=m.arch, normalize=m.normalize)
            if keep:
                weakref.finalize(trained, shutil.rmtree, keep, True)
                keep = None
            trained.hart_log = result
            return trained
        # The export's file is a temporary: name the run by the module's class.
        log["arch"] = type(m.module).__name__
        log.pop("model", None)
        module = m.module if inplace else copy.deepcopy(m.module)
        steps = training["epochs"] * math.ceil(len(d) / training["batch_size"])
        load_trained(module, read_tensors(out), steps)
        module.hart_log = TrainLog(log, None if keep else out)
        return module
    finally:
        if keep:
            shutil.rmtree(keep, ignore_errors=True)


def _eval_data(eval_data, data, eval_limit, data_dir, image_size):
    if eval_limit == 0:
        return None
    if eval_data is None:
        if not isinstance(data, (str, os.PathLike)):
            return None
        eval_data = data
    return as_data(eval_data, split="test", limit=eval_limit, data_dir=data_dir, image_size=image_size)


def read_tensors(path):
    """{name: numpy array} of a trained model file: an ONNX graph's
    initializers, a TorchScript module's state dict, or a safetensors file."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(path).graph
        return {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    if ext == ".safetensors":
        return _read_safetensors(path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice: the engine writes TorchScript
        module = torch.jit.load(path, map_location="cpu")
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


_SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path):
    """The safetensors format (an 8-byte header length, a JSON header, the raw
    little-endian data), read with NumPy so the package needs no extra wheel."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(raw[base + lo : base + hi], dtype=_SAFETENSORS_DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def load_trained(module, tensors, steps):
    """Copies ``tensors`` (the engine's trained ones) into ``module``'s state
    dict by name; each must exist there with its shape. BatchNorm layers whose
    running statistics were trained count ``steps`` more batches."""
    state = module.state_dict()
    with torch.no_grad():
        for name, value in tensors.items():
            if name not in state:
                raise ModelError(
                    f"the trained model holds {name!r}, which the module's state dict lacks "
                    "(its export renamed a tensor; train the exported file with hart.fine_tune(path) instead)"
                )
            target = state[name]
            if tuple(target.shape) != tuple(value.shape):
                raise ModelError(f"trained {name!r} has shape {tuple(value.shape)}, the module's {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.array(value)).to(target.dtype))
        for prefix, sub in module.named_modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm) and sub.num_batches_tracked is not None:
                if (prefix + "." if prefix else "") + "running_mean" in tensors:
                    sub.num_batches_tracked += steps
