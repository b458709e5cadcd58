"""The measuring functions: each maps its keyword arguments onto the
engine call of the CLI command of the same name."""

from __future__ import annotations

import json
import os
import tempfile

from . import _hart
from ._data import as_data
from ._errors import InvalidArgumentError
from ._model import load
from ._progress import Bar
from ._results import AttackResult, CampaignResult, HessianResult, SweepResult, remove


def _bits(bits):
    if isinstance(bits, int):
        return str(bits)
    if isinstance(bits, str):
        return bits
    try:
        return ",".join(str(int(b)) for b in bits)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"bits must be a name, a position or a list of positions (got {bits!r})") from None


def _faults(faults, directory):
    """A fault-list path for the engine: a path as given, or a DataFrame /
    rows of (param, index, bit[, group]) written as CSV into ``directory``."""
    if faults is None or isinstance(faults, (str, os.PathLike)):
        return None if faults is None else os.fspath(faults)
    import pandas as pd

    table = faults if isinstance(faults, pd.DataFrame) else pd.DataFrame(list(faults))
    if not isinstance(faults, pd.DataFrame):
        names = ["param", "index", "bit", "group"][: table.shape[1]]
        if table.shape[1] not in (3, 4):
            raise InvalidArgumentError("faults: rows must be (param, index, bit) or (param, index, bit, group)")
        table.columns = names
    path = os.path.join(directory, "faults.csv")
    table.to_csv(path, index=False)
    return path


def _sample(sample_params):
    return None if sample_params is None else str(sample_params)


def sweep(
    model,
    data="fashion-mnist",
    *,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    bits="all",
    params=None,
    scope="all",
    sample_params=None,
    seed=0,
    faults=None,
    threshold=0.1,
    exact_rad=False,
    verdict="exact",
    confidence=None,
    storage="fp32",
    per_channel=False,
    defense="none",
    profile_data=None,
    profile_limit=1000,
    nan_policy="wrong",
    engine="auto",
    batch_size=1000,
    jobs=None,
    device="cpu",
    out=None,
    format="parquet",
    example_input=None,
    progress=True,
):
    """Single-bit-flip sweep, as ``hart sweep``: RAD of every selected flip.

    ``model``: a file path, a ``torch.nn.Module`` (exported by HART) or a
    :class:`hart.Model`. ``data``: a data set name or path, an ``(x, y)`` pair
    of arrays/tensors (uint8 pixels, or floats in [0, 1]) or a
    ``torch.utils.data.Dataset``; ``split``, ``limit``, ``data_dir`` and
    ``image_size`` as the CLI's. ``bits``: a name (``all``, ``sign``,
    ``exponent``, ``exponent-msb``, ``mantissa``), a position or a list of them
    (0 = mantissa LSB, 31 = sign). ``faults``: a CSV path, a DataFrame or rows
    of ``(param, index, bit[, group])``. ``defense="ranger"`` profiles on the
    training split of ``profile_data`` (default: ``data`` when it is named).
    Every other option is the ``hart sweep`` option of that name. ``out``: the
    output directory (a killed or interrupted sweep resumes from it); without
    it the sweep runs in a temporary directory that is removed.

    Returns a :class:`hart.SweepResult`.
    """
    profile = _profile(defense, profile_data, data, data_dir, image_size)
    m = load(model, example_input)
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    scratch = tempfile.mkdtemp(prefix="hart-sweep-")
    try:
        directory = scratch if out is None else os.fspath(out)
        path = m._resolve(d)
        with Bar("sweep", progress) as bar:
            kind = _hart.sweep(
                (path, m.arch, m.normalize),
                d,
                directory,
                bits=_bits(bits),
                params=params,
                scope=scope,
                sample_params=_sample(sample_params),
                seed=seed,
                faults=_faults(faults, scratch),
                threshold=threshold,
                exact_rad=exact_rad,
                verdict=verdict,
                confidence=confidence,
                storage=storage,
                per_channel=per_channel,
                defense=defense,
                profile=profile,
                profile_limit=profile_limit,
                nan_policy=nan_policy,
                engine=engine,
                batch_size=batch_size,
                jobs=jobs,
                format=format,
                device=device,
                progress=bar,
            )
        return SweepResult(directory, kind, None if out is None else directory)
    finally:
        remove(scratch)


def evaluate(
    model,
    data="fashion-mnist",
    *,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    batch_size=256,
    nan_policy="wrong",
    device="cpu",
    example_input=None,
):
    """Accuracy of the model on the data in eval mode, as ``hart eval --json``:
    a dict ``{"accuracy", "correct", "total", "loss"}`` (accuracy a fraction,
    loss the mean cross-entropy over the samples with finite logits).
    ``nan_policy``: a sample whose logits hold a NaN counts as wrong
    (``"wrong"``, HART's rule) or by ``torch.argmax``'s reading (``"argmax"``).
    """
    m = load(model, example_input)
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    path = m._resolve(d)
    return json.loads(
        _hart.evaluate((path, m.arch, m.normalize), d, batch_size=batch_size, nan_policy=nan_policy, device=device)
    )


def hessian(
    model,
    data="fashion-mnist",
    *,
    split="train",
    limit=1000,
    data_dir=None,
    image_size=224,
    batch_size=128,
    rel_stderr=0.02,
    min_probes=10,
    max_probes=1000,
    method="hutchinson",
    sketch=10,
    top_k=1,
    eig_tol=1e-3,
    max_lanczos=100,
    density=False,
    density_runs=1,
    density_steps=80,
    layers="all",
    seed=0,
    device="cpu",
    example_input=None,
    progress=True,
):
    """Curvature of the mean cross-entropy over the data, as ``hart hessian``:
    trace with its standard error (Hutchinson, Hutch++ or Gauss–Newton), the
    per-tensor traces, the top eigenvalues and, with ``density=True``, the
    eigenvalue density. ``limit`` defaults to 1000 images of the training
    split, as the CLI's; every option is the ``hart hessian`` option of that
    name. Returns a :class:`hart.HessianResult`.
    """
    m = load(model, example_input)
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    path = m._resolve(d)
    with Bar("HVPs", progress) as bar:
        report = _hart.hessian(
            (path, m.arch, m.normalize),
            d,
            batch_size=batch_size,
            rel_stderr=rel_stderr,
            min_probes=min_probes,
            max_probes=max_probes,
            method=method,
            sketch=sketch,
            top_k=top_k,
            eig_tol=eig_tol,
            max_lanczos=max_lanczos,
            density=density,
            density_runs=density_runs,
            density_steps=density_steps,
            layers=layers,
            seed=seed,
            device=device,
            progress=bar,
        )
    return HessianResult(json.loads(report))


def campaign(
    model,
    data="fashion-mnist",
    *,
    fault,
    levels,
    split="test",
    limit=None,
    data_dir=None,
    image_size=224,
    storage="fp32",
    per_channel=False,
    defense="none",
    profile_data=None,
    profile_limit=1000,
    trials=100,
    seed=0,
    scope="all",
    params=None,
    threshold=0.1,
    confidence=0.95,
    batch_size=1000,
    device="cpu",
    out=None,
    format="parquet",
    example_input=None,
    progress=True,
):
    """Accuracy under random faults per level, as ``hart campaign``.

    ``fault``: ``bitflip``, ``stuck-at-0``, ``stuck-at-1`` (levels are bit-error
    rates per stored bit) or ``gaussian`` (levels are σ / max|W|); ``levels`` a
    list of numbers or the CLI's comma-separated string; ``storage`` one format
    or a list (one campaign each: with several, each writes into
    ``out/<storage>`` as the CLI's). Every other option is the ``hart campaign``
    option of that name; ``out`` resumes as ``hart.sweep``'s. Returns a
    :class:`hart.CampaignResult`.
    """
    storages = [storage] if isinstance(storage, str) else list(storage)
    storages = [s.strip() for part in storages for s in part.split(",")]
    if len(set(storages)) != len(storages):
        raise InvalidArgumentError(f"storage: {storages} lists a format twice")
    if not isinstance(levels, str):
        levels = ",".join(repr(float(v)) for v in levels)
    profile = _profile(defense, profile_data, data, data_dir, image_size)
    m = load(model, example_input)
    d = as_data(data, split=split, limit=limit, data_dir=data_dir, image_size=image_size)
    scratch = tempfile.mkdtemp(prefix="hart-campaign-")
    try:
        root = scratch if out is None else os.fspath(out)
        path = m._resolve(d)
        dirs = {}
        for st in storages:
            directory = root if len(storages) == 1 else os.path.join(root, st)
            with Bar(f"campaign {st}", progress) as bar:
                _hart.campaign(
                    (path, m.arch, m.normalize),
                    d,
                    directory,
                    fault=fault,
                    levels=levels,
                    storage=st,
                    per_channel=per_channel,
                    defense=defense,
                    profile=profile,
                    profile_limit=profile_limit,
                    trials=trials,
                    seed=seed,
                    scope=scope,
                    params=params,
                    threshold=threshold,
                    confidence=confidence,
                    batch_size=batch_size,
                    format=format,
                    device=device,
                    progress=bar,
                )
            dirs[st] = directory
        return CampaignResult(dirs, None if out is None else root)
    finally:
        remove(scratch)


def _profile(defense, profile_data, data, data_dir, image_size):
    """Ranger's profile data set for the engine, or None."""
    if defense != "ranger":
        return None
    if profile_data is None:
        if not isinstance(data, (str, os.PathLike)):
            raise InvalidArgumentError(
                'defense="ranger" profiles activations on training images: pass profile_data= a data set name or path'
            )
        profile_data = data
    return (os.fspath(profile_data), None if data_dir is None else os.fspath(data_dir), image_size)


def attack(
    model,
    data="fashion-mnist",
    *,
    attack_data=None,
    limit=128,
    eval_limit=1000,
    data_dir=None,
    image_size=224,
    storage="int8",
    per_channel=False,
    method="bfa",
    max_flips=100,
    target_accuracy=None,
    top_k=10,
    trials=5,
    seed=0,
    defense="none",
    profile_data=None,
    profile_limit=1000,
    batch_size=1000,
    device="cpu",
    out=None,
    example_input=None,
    progress=True,
):
    """Worst-case bit flips, as ``hart attack``: the progressive bit search of
    the bit-flip attack (``method="bfa"``, with the random baseline at each
    trial's budget) or uniformly random flips, on the stored int8/int4 codes
    or fp32 words (``storage``), through a run-time ``defense``.

    ``data`` named (or a path): as the CLI, each trial's attack batch is
    ``limit`` images drawn from the first ``10·limit`` training images and
    accuracy is measured on the first ``eval_limit`` test images. Otherwise
    ``data`` holds the evaluation images and ``attack_data`` (required) the
    images attack batches are drawn from (its first ``10·limit``). Every
    other option is the ``hart attack`` option of that name. ``out``: the
    directory for flips.csv, summary.json and accuracy.png (default: a
    temporary one, removed).

    Returns a :class:`hart.AttackResult`.
    """
    if not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit (images per attack batch) must be a positive integer (got {limit!r})")
    named = isinstance(data, (str, os.PathLike))
    if attack_data is None:
        if not named:
            raise InvalidArgumentError(
                "attack: with data given as arrays or a Dataset, pass attack_data= the images attack batches are drawn from"
            )
        attack_data = data
    profile = _profile(defense, profile_data, data, data_dir, image_size)
    m = load(model, example_input)
    pool = as_data(attack_data, split="train", limit=10 * limit, data_dir=data_dir, image_size=image_size)
    d = as_data(data, split="test", limit=eval_limit, data_dir=data_dir, image_size=image_size)
    scratch = tempfile.mkdtemp(prefix="hart-attack-")
    try:
        directory = scratch if out is None else os.fspath(out)
        path = m._resolve(d)
        with Bar("attack", progress) as bar:
            _hart.attack(
                (path, m.arch, m.normalize),
                pool,
                d,
                directory,
                attack_images=limit,
                storage=storage,
                per_channel=per_channel,
                method=method,
                max_flips=max_flips,
                target_accuracy=target_accuracy,
                top_k=top_k,
                trials=trials,
                seed=seed,
                defense=defense,
                profile=profile,
                profile_limit=profile_limit,
                batch_size=batch_size,
                device=device,
                progress=bar,
            )
        return AttackResult(directory, None if out is None else directory)
    finally:
        remove(scratch)
