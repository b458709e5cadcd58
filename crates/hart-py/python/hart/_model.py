"""``hart.Model``: a model file HART opens, or a ``torch.nn.Module`` that HART
exports itself (ONNX first, for HART's layer graph and its fast sweep
engine; TorchScript when the ONNX export or its import fails)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import warnings
import weakref

import torch

from . import _hart
from ._errors import HartError, InvalidArgumentError, ModelError


def _first_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _quietly(fn):
    """Runs ``fn()`` with the exporters' console output and warnings held back."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()


class Model:
    """A model HART runs: ``hart.load(path_or_module)`` makes one.

    A file (``.onnx``, TorchScript ``.pt``, ``.safetensors`` with ``arch``) is
    opened by the engine as ``--model`` opens it. An eager ``torch.nn.Module``
    is exported on first use, in eval mode, with an input of the data's shape
    (or ``example_input``): ``torch.onnx.export`` (the torch.export-based
    exporter, unoptimised so that every tensor keeps its ``state_dict`` name),
    or, if that export or HART's import of it fails, ``torch.jit.trace``
    (then ``torch.jit.script``). ``repr`` says which was taken and why. The
    export is redone when the module's weights change. ``nn.Dropout``
    submodules are exported in training mode, so the ONNX graph keeps them:
    HART applies them when it trains (``hart.fine_tune``) and nowhere else;
    a TorchScript fallback is traced in eval mode and trains without them.
    """

    def __init__(self, path=None, *, module=None, example_input=None, arch=None, normalize=None):
        self.path = None if path is None else os.fspath(path)
        self.module = module
        self.example_input = example_input
        self.arch = arch
        self.normalize = normalize
        self.exporter = "file" if module is None else None
        self.reason = None
        self.info = None
        self._key = None
        self._dir = None

    # -- what a call needs ------------------------------------------------
    def _resolve(self, data):
        """The file to pass to the engine for ``data`` (exported if need be)."""
        if self.module is None:
            if self.info is None:
                self.info = json.loads(
                    _hart.describe_model(self.path, data, arch=self.arch, normalize=self.normalize)
                )
            return self.path
        key = self._fingerprint(data)
        if key != self._key:
            self._export(data)
            self._key = key
        return self.path

    def _check(self, data):
        """Raises what the engine's ``check_input`` raises for ``data``."""
        path = self._resolve(data)
        _hart.describe_model(path, data, arch=self.arch, normalize=self.normalize, check=True)

    def _fingerprint(self, data):
        state = tuple((k, v.data_ptr(), v._version) for k, v in self.module.state_dict(keep_vars=True).items())
        return (self._example_shape(data), state)

    def _example_shape(self, data):
        if self.example_input is not None:
            return tuple(self.example_input.shape)
        _, c, h, w = data.shape
        return (2, c, h, w)  # batch 2: a batch of 1 would be specialised by torch.export

    def _example(self, data):
        if self.example_input is not None:
            return self.example_input
        return torch.zeros(self._example_shape(data))

    def _export(self, data):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="hart-model-")
            weakref.finalize(self, shutil.rmtree, self._dir, True)
        module = self.module
        was_training = module.training
        module.eval()
        try:
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            example = self._example(data).to(device)
            _check_forward(module, example, data)
            onnx_path = os.path.join(self._dir, "model.onnx")
            drops = [m for m in module.modules() if isinstance(m, torch.nn.Dropout)]
            try:
                # An eval-mode export leaves nn.Dropout out; in training mode
                # it is kept as an ONNX Dropout node, which HART applies only
                # when it trains (evaluation and sweeps treat it as the
                # identity), so fine-tuning keeps the module's dropout.
                for d in drops:
                    d.train()
                _quietly(lambda: _export_onnx(module, example, onnx_path))
                info = json.loads(_hart.describe_model(onnx_path, data))
                self.path, self.exporter, self.info = onnx_path, "onnx", info
                self.reason = "torch.onnx.export (dynamo, unoptimised: state_dict names kept), imported as HART's layer graph"
                if drops:
                    self.reason += f"; {len(drops)} nn.Dropout kept, active in training only"
                return
            except HartError as e:
                why = f"HART cannot import its ONNX export ({e})"
            except Exception as e:  # noqa: BLE001 - any exporter failure falls back
                why = f"torch.onnx.export failed ({_first_line(e)})"
            finally:
                for d in drops:
                    d.eval()
            pt_path = os.path.join(self._dir, "model.pt")
            try:
                how = _quietly(lambda: _export_torchscript(module, example, pt_path))
            except Exception as e:  # noqa: BLE001
                raise ModelError(f"cannot export the module: {why}; TorchScript failed too ({_first_line(e)})") from None
            self.path, self.exporter = pt_path, "torchscript"
            self.info = json.loads(_hart.describe_model(pt_path, data))
            self.reason = f"{how}, as {why}"
        finally:
            module.train(was_training)

    def save(self, path, data="fashion-mnist"):
        """Writes the file HART runs for this model (for a module: its export
        for ``data``'s input shape) to ``path``, e.g. to run the CLI on it.
        Returns ``path``."""
        from ._data import as_data

        source = self._resolve(as_data(data, limit=1))
        shutil.copyfile(source, path)
        return path

    def __repr__(self):
        if self.exporter is None:
            return "hart.Model(torch module, exported on first use)"
        parts = [self.exporter if self.exporter != "file" else repr(self.path)]
        if self.reason:
            parts.append(self.reason)
        if self.info:
            parts.append(f"{len(self.info['tensors'])} tensors, {self.info['float_numel']:,} float32 values")
        return f"hart.Model({'; '.join(parts)})"


def _check_forward(module, example, data):
    """The module runs on an input of the data's shape: else no exporter can
    trace it, and the error to report is the mismatch (in the words of the
    engine's ``check_input``), not the exporters'."""
    try:
        with torch.no_grad():
            module(example)
    except Exception as e:  # noqa: BLE001 - any failure of the user's forward
        _, c, h, w = data.shape
        if tuple(example.shape[1:]) == (c, h, w):
            gives = f"{data.name} gives {c}×{h}×{w} (read as {data.source})"
        else:
            gives = f"example_input gives {'×'.join(str(s) for s in example.shape[1:])}"
        raise InvalidArgumentError(
            f"the model ({type(module).__name__}) cannot take the inputs {gives}: {_first_line(e)}"
        ) from None


def _example_data(example_input):
    """A one-record data set of ``example_input``'s shape (zeros, label 0),
    for checking a model against it before any data is given."""
    import numpy as np

    from ._data import from_arrays

    shape = tuple(example_input.shape)
    if len(shape) != 4 or not all(int(s) > 0 for s in shape):
        raise InvalidArgumentError(f"example_input: expected an N×C×H×W batch, got shape {shape}")
    x = np.zeros((1, *shape[1:]), np.uint8)
    return from_arrays(x, np.zeros(1, np.int64), name="example_input")


def _export_onnx(module, example, path):
    dynamic = {"batch": torch.export.Dim("batch", min=1, max=1 << 16)}
    torch.onnx.export(
        module,
        (example,),
        path,
        dynamo=True,
        optimize=False,
        external_data=False,
        dynamic_shapes=({0: dynamic["batch"]},),
    )


def _export_torchscript(module, example, path):
    try:
        with torch.no_grad():
            scripted = torch.jit.trace(module, example)
        how = "torch.jit.trace"
    except Exception:  # noqa: BLE001 - data-dependent control flow: script instead
        scripted = torch.jit.script(module)
        how = "torch.jit.script"
    scripted.save(path)
    return how


def load(path_or_module, example_input=None, *, arch=None, normalize=None):
    """A :class:`Model` from a model file or a ``torch.nn.Module``.

    ``path_or_module``: ``.onnx``, TorchScript ``.pt`` or ``.safetensors``
    (``arch`` names its zoo architecture or ONNX graph, ``normalize`` its
    input normalisation, as the CLI's ``--arch``/``--normalize``), an eager
    module, or a ``hart.Model`` (returned as is). ``example_input``: an input
    batch (N×C×H×W) for exporting a module, when the data's shape is not the
    one to use; given, the model is opened (a module exported) and checked
    against it at once, as every call checks it against its data first (the
    engine's ``check_input``, as the CLI's ``--model``): a model that cannot
    take it raises :class:`InvalidArgumentError` (a ``ValueError``) naming
    both shapes where the model declares its own.
    """
    if isinstance(path_or_module, Model):
        return path_or_module
    if isinstance(path_or_module, torch.nn.Module):
        if arch is not None or normalize is not None:
            raise InvalidArgumentError("arch and normalize apply to model files, not to a torch module")
        model = Model(module=path_or_module, example_input=example_input)
    elif isinstance(path_or_module, (str, os.PathLike)):
        if not os.path.exists(path_or_module):
            from ._errors import NotFoundError

            raise NotFoundError(f"{os.fspath(path_or_module)}: no such model file")
        model = Model(path_or_module, arch=arch, normalize=normalize)
    else:
        raise InvalidArgumentError(
            f"model must be a file path, a torch.nn.Module or a hart.Model (got {type(path_or_module).__name__})"
        )
    if example_input is not None:
        model._check(_example_data(example_input))
    return model
