"""``hart.quantize``, ``hart.prune`` and ``hart.landscape``: the CLI's
compression sweeps and loss landscapes, one engine call per model, several
models compared side by side as the CLI's repeated ``--model``."""

from __future__ import annotations

import json
import os

import pandas as pd
import torch

from . import _hart
from ._data import as_data
from ._errors import InvalidArgumentError
from ._model import Model, load
from ._progress import Bar

QUANTIZE_COLUMNS = ["model", "bits", "granularity", "accuracy", "loss", "float_accuracy"]
PRUNE_COLUMNS = ["model", "sparsity", "achieved_sparsity", "zeros", "weights", "scope", "accuracy", "loss"]


def _label(model):
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    if isinstance(model, Model):
        return type(model.module).__name__ if model.module is not None else _label(model.path)
    if isinstance(model, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fspath(model)))[0]
    return type(model).__name__


def labelled(models):
    """[(label, model)] for one model, a list (labels: file stems or class
    names, a repeated one with its position appended, as the CLI's legend) or
    a dict {label: model}."""
    if isinstance(models, dict):
        if not models:
            raise InvalidArgumentError("models: the dict is empty")
        return [(str(k), v) for k, v in models.items()]
    if isinstance(models, (list, tuple)):
        if not models:
            raise InvalidArgumentError("models: the list is empty")
        stems = [_label(m) for m in models]
        return [(s if stems.count(s) == 1 else f"{s}#{i + 1}", m) for i, (s, m) in enumerate(zip(stems, models))]
    return [(_label(models), models)]


def _csv(values, what):
    if isinstance(values, str):
        return values
    if isinstance(values, (int, float)):
        return repr(values)
    try:
        return ",".join(repr(v) if isinstance(v, float) else str(int(v)) for v in values)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what} must be a number, a list of numbers or the CLI's comma-separated string (got {values!r})") from None


def _write_json(out, name, value):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        json.dump(value, f, indent=2)


def _prepare(models, data, split, limit, data_dir, image_size, example_input, out, save):
    if save and out is None:
        raise InvalidArgumentError("save=True writes the compressed models into out=: pass a directory")
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    return d, [(label, load(m, example_input)) for label, m in labelled(models)]


def _curve(engine, name, columns, models, data, split, limit, data_dir, image_size, example_input, out, save,
           progress, **options):
    """One engine curve per model, their rows as a DataFrame (and ``{name}.json`` in ``out``)."""
    d, ms = _prepare(models, data, split, limit, data_dir, image_size, example_input, out, save)
    rows = []
    for label, m in ms:
        path = m._resolve(d)
        with Bar(f"{name} {label}", progress) as bar:
            saved = None if not save else os.fspath(out)
            rows += json.loads(engine((path, m.arch, m.normalize), d, label=label, save=saved, progress=bar, **options))
    rows = [{k: r[k] for k in columns} for r in rows]
    if out is not None:
        _write_json(os.fspath(out), f"{name}.json", rows)
    return pd.DataFrame(rows, columns=columns)


def quantize(
    models,
    data="fashion-mnist",
    *,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    bits="8,6,4,3,2",
    per_channel=False,
    include_bias_bn=False,
    batch_size=256,
    device="cpu",
    out=None,
    save=False,
    example_input=None,
    progress=True,
):
    """Accuracy under weight-only uniform (symmetric) quantization, as ``hart
    quantize``: for each model and each bit width of ``bits`` (a list or the
    CLI's ``"8,6,4"``), every weight tensor (rank ≥ 2; rank-1 too with
    ``include_bias_bn``) rounded to ``2^(b-1) - 1`` levels per tensor (per
    output channel with ``per_channel``). ``models``: one model (a file, a
    torch module or a :class:`hart.Model`), a list, or a dict {label: model}.
    ``out``: a folder for ``quantize.json`` (and, ``save=True``, each
    quantized model as ``{label}-int{b}``); the CLI's plot is not drawn.

    Returns a DataFrame with the rows of ``quantize.json``: ``model, bits,
    granularity, accuracy, loss, float_accuracy``.
    """
    return _curve(
        _hart.quantize, "quantize", QUANTIZE_COLUMNS, models, data, split, limit, data_dir, image_size,
        example_input, out, save, progress,
        bits=_csv(bits, "bits"), per_channel=per_channel, include_bias_bn=include_bias_bn,
        batch_size=batch_size, device=device,
    )


def prune(
    models,
    data="fashion-mnist",
    *,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    sparsity="0.5,0.7,0.9",
    scope="global",
    include_bias_bn=False,
    batch_size=256,
    device="cpu",
    out=None,
    save=False,
    example_input=None,
    progress=True,
):
    """Accuracy under magnitude pruning, as ``hart prune``: for each model and
    each fraction of ``sparsity`` (a list or the CLI's string; 0 is always
    measured first), that share of the weights with the smallest magnitudes
    set to zero, over all weight tensors together (``scope="global"``) or in
    each (``"layer"``). ``models``, ``out`` and ``save`` as in
    :func:`quantize` (``prune.json``; models as ``{label}-sparse{s}``).

    Returns a DataFrame with the rows of ``prune.json``: ``model, sparsity,
    achieved_sparsity, zeros, weights, scope, accuracy, loss``.
    """
    return _curve(
        _hart.prune, "prune", PRUNE_COLUMNS, models, data, split, limit, data_dir, image_size,
        example_input, out, save, progress,
        sparsity=_csv(sparsity, "sparsity"), scope=scope, include_bias_bn=include_bias_bn,
        batch_size=batch_size, device=device,
    )


class LandscapeResult:
    """What ``hart.landscape`` measured. ``points``: one row per grid point
    and model (``model, x, y, loss, accuracy``; ``y`` is NaN on a 1-D line);
    ``models``: per model ``label, tensors, clean_loss, clean_accuracy,
    min_loss, seconds`` (and ``csv`` with ``out``); ``summary``: the keys of
    the CLI's ``landscape.json`` (without its plots)."""

    def __init__(self, summary, points, out):
        self.summary = summary
        self.points = points
        self.models = pd.DataFrame(summary["models"])
        self.out = out

    def __repr__(self):
        g = self.summary["grid"]
        return (
            f"hart.LandscapeResult({g['dims']}-D, {g['steps']} steps over [{g['min']}, {g['max']}], "
            f"{len(self.models)} model(s), {self.summary['images']} images)"
        )


def landscape(
    models,
    data="fashion-mnist",
    *,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    dims=1,
    range="-1:1",
    steps=51,
    layer=None,
    seed=0,
    include_bias_bn=False,
    batch_size=256,
    device="cpu",
    out=None,
    example_input=None,
    progress=True,
):
    """Loss and accuracy along one (``dims=1``) or two random
    filter-normalised directions (Li et al. 2018), as ``hart landscape``:
    ``range`` ``"MIN:MAX"`` (or a pair) in filter-norm units, ``steps`` points
    per axis, ``layer`` to move one layer's tensors only (a graph node name),
    ``seed`` (the same seed gives the same directions). ``models`` as in
    :func:`quantize`. ``out``: a folder for ``{label}.csv`` and
    ``landscape.json``, as the CLI writes them (not its plots).

    Returns a :class:`hart.LandscapeResult`.
    """
    if isinstance(range, (tuple, list)):
        if len(range) != 2:
            raise InvalidArgumentError(f"range must be MIN:MAX or a (min, max) pair (got {range!r})")
        range = f"{float(range[0])!r}:{float(range[1])!r}"
    d, ms = _prepare(models, data, split, limit, data_dir, image_size, example_input, None, False)
    summaries, tables, grid = [], [], None
    for label, m in ms:
        path = m._resolve(d)
        csv = None if out is None else os.path.join(os.fspath(out), f"{label}.csv")
        if csv is not None:
            os.makedirs(os.fspath(out), exist_ok=True)
        with Bar(f"landscape {label}", progress) as bar:
            r = json.loads(
                _hart.landscape(
                    (path, m.arch, m.normalize),
                    d,
                    dims=dims,
                    range=range,
                    steps=steps,
                    layer=layer,
                    seed=seed,
                    include_bias_bn=include_bias_bn,
                    batch_size=batch_size,
                    device=device,
                    csv=csv,
                    progress=bar,
                )
            )
        grid = r["grid"]
        summary = {"label": label, "path": m.path if m.module is None else None, "csv": csv}
        summary.update({k: r[k] for k in ("tensors", "clean_loss", "clean_accuracy", "min_loss", "seconds")})
        summaries.append(summary)
        tables.append(pd.DataFrame(r["points"], columns=["x", "y", "loss", "accuracy"]).astype({"y": float}).assign(model=label))
    points = pd.concat(tables, ignore_index=True)[["model", "x", "y", "loss", "accuracy"]]
    summary = {
        "grid": grid,
        "seed": seed,
        "layer": layer,
        "include_bias_bn": include_bias_bn,
        "dataset": d.name,
        "split": split,
        "images": len(d),
        "models": summaries,
    }
    if out is not None:
        _write_json(os.fspath(out), "landscape.json", summary)
    return LandscapeResult(summary, points, None if out is None else os.fspath(out))
