"""Type hints of the ``hart`` package (see ``hart/__init__.py`` and docs/python.md)."""

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar, Union, overload

import numpy as np
import pandas as pd
import torch

__version__: str

PathLike = Union[str, os.PathLike[str]]
ArrayLike = Union[np.ndarray, torch.Tensor]
#: A data set name (fashion-mnist, mnist, kmnist, cifar10, cifar100, imagenet) or path,
#: an (x, y) pair (uint8 pixels or floats in [0, 1], N×C×H×W or N×H×W; integer labels),
#: or a torch Dataset of (image, label) items.
DataLike = Union[str, os.PathLike[str], tuple[ArrayLike, ArrayLike], torch.utils.data.Dataset]
ModelLike = Union[str, os.PathLike[str], torch.nn.Module, "Model"]
#: True: a tqdm bar; False: none; a callable: called as progress(done, total, message).
Progress = Union[bool, Callable[[int, int, str], Any]]
FaultRows = Union[PathLike, pd.DataFrame, Iterable[Sequence[Any]]]

class HartError(Exception): ...
class InvalidArgumentError(HartError, ValueError): ...
class NotFoundError(HartError, FileNotFoundError): ...
class DataError(HartError, ValueError): ...
class ModelError(HartError, ValueError): ...
class UnsupportedOperatorError(ModelError): ...
class HartIOError(HartError, OSError): ...
class TorchError(HartError, RuntimeError): ...

class Model:
    """A model file, or a torch module HART exports (ONNX, else TorchScript) on first use."""

    path: str | None
    module: torch.nn.Module | None
    example_input: torch.Tensor | None
    arch: str | None
    normalize: str | None
    #: "file", "onnx" or "torchscript" (None until a module is first exported).
    exporter: str | None
    #: How the module was exported and why.
    reason: str | None
    #: {"kind", "arch", "tensors": [{"name", "shape", "trainable"}], "float_numel"}.
    info: dict[str, Any] | None
    #: Set on the Model hart.fine_tune / hart.train return for a model file.
    hart_log: "TrainLog"
    def save(self, path: PathLike, data: DataLike = "fashion-mnist") -> PathLike: ...

def load(
    path_or_module: ModelLike,
    example_input: torch.Tensor | None = None,
    *,
    arch: str | None = None,
    normalize: str | None = None,
) -> Model:
    """A model file or torch module; with example_input, opened and checked against it at once."""

class SweepResult:
    #: One row per flip: param, index, bit, old, new, correct, total, rad, exact, samples, bound, sure.
    flips: pd.DataFrame | None
    #: groups.csv for a grouped fault list (else None).
    groups: pd.DataFrame | None
    #: summary.json.
    summary: dict[str, Any]
    #: layer, flips, erratic_bits, params, erratic_params.
    per_layer: pd.DataFrame
    #: bit, field, flips, erratic_bits.
    per_bit: pd.DataFrame
    out: str | None
    #: param, flips, erratic_bits (None for grouped fault lists).
    @property
    def per_tensor(self) -> pd.DataFrame | None: ...
    @property
    def clean_accuracy(self) -> float: ...
    @property
    def erratic(self) -> pd.DataFrame | None: ...
    def to_parquet(self, directory: PathLike) -> None: ...

class CampaignResult:
    #: The columns of trials.parquet plus storage.
    trials: pd.DataFrame
    #: summary.json's per-level statistics plus storage.
    levels: pd.DataFrame
    #: Each storage format's summary.json.
    summaries: dict[str, dict[str, Any]]
    out: str | None

class AttackResult:
    #: group, trial, method, iteration, param, index, bit, old, new, attack_loss, accuracy (flips.csv).
    flips: pd.DataFrame
    #: summary.json.
    summary: dict[str, Any]
    #: method, trial, flips, final_accuracy, reached, detected_flips, zeroed_weights, zeroed_groups.
    trials: pd.DataFrame
    #: method, trial, flips, accuracy: accuracy after 0, 1, ... flips.
    curves: pd.DataFrame
    mean_flips: float
    ci95: list[float] | None
    clean_accuracy: float
    out: str | None

class HessianResult:
    report: dict[str, Any]
    trace: float
    trace_stderr: float
    top_eigenvalues: list[float]
    density: dict[str, Any] | None
    #: tensor, trace, stderr.
    per_layer: pd.DataFrame

def sweep(
    model: ModelLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    bits: str | int | Sequence[int] = "all",
    params: str | None = None,
    scope: Literal["all", "params", "conv"] = "all",
    sample_params: int | float | str | None = None,
    seed: int = 0,
    faults: FaultRows | None = None,
    threshold: float = 0.1,
    exact_rad: bool = False,
    verdict: Literal["exact", "sequential"] = "exact",
    confidence: float | None = None,
    storage: Literal["fp32", "int8", "int4"] = "fp32",
    per_channel: bool = False,
    defense: str = "none",
    profile_data: PathLike | None = None,
    profile_limit: int = 1000,
    nan_policy: Literal["wrong", "argmax"] = "wrong",
    engine: Literal["auto", "generic", "reference"] = "auto",
    batch_size: int = 1000,
    jobs: int | None = None,
    device: str = "cpu",
    out: PathLike | None = None,
    format: Literal["parquet", "csv"] = "parquet",
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> SweepResult: ...
def evaluate(
    model: ModelLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    batch_size: int = 256,
    nan_policy: Literal["wrong", "argmax"] = "wrong",
    device: str = "cpu",
    example_input: torch.Tensor | None = None,
) -> dict[str, float | int]: ...
def hessian(
    model: ModelLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = 1000,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    batch_size: int = 128,
    rel_stderr: float = 0.02,
    min_probes: int = 10,
    max_probes: int = 1000,
    method: Literal["hutchinson", "hutchpp", "gauss-newton"] = "hutchinson",
    sketch: int = 10,
    top_k: int = 1,
    eig_tol: float = 1e-3,
    max_lanczos: int = 100,
    density: bool = False,
    density_runs: int = 1,
    density_steps: int = 80,
    layers: str = "all",
    seed: int = 0,
    device: str = "cpu",
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> HessianResult: ...
def campaign(
    model: ModelLike,
    data: DataLike = "fashion-mnist",
    *,
    fault: Literal["bitflip", "stuck-at-0", "stuck-at-1", "gaussian"],
    levels: str | Sequence[float],
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    storage: str | Sequence[str] = "fp32",
    per_channel: bool = False,
    defense: str = "none",
    profile_data: PathLike | None = None,
    profile_limit: int = 1000,
    trials: int = 100,
    seed: int = 0,
    scope: Literal["all", "params", "conv"] = "all",
    params: str | None = None,
    threshold: float = 0.1,
    confidence: float = 0.95,
    batch_size: int = 1000,
    device: str = "cpu",
    out: PathLike | None = None,
    format: Literal["parquet", "csv"] = "parquet",
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> CampaignResult: ...

def attack(
    model: ModelLike,
    data: DataLike = "fashion-mnist",
    *,
    attack_data: DataLike | None = None,
    limit: int = 128,
    eval_limit: int | None = 1000,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    storage: Literal["fp32", "int8", "int4"] = "int8",
    per_channel: bool = False,
    method: Literal["bfa", "random"] = "bfa",
    max_flips: int = 100,
    target_accuracy: float | None = None,
    top_k: int = 10,
    trials: int = 5,
    seed: int = 0,
    defense: str = "none",
    profile_data: PathLike | None = None,
    profile_limit: int = 1000,
    batch_size: int = 1000,
    device: str = "cpu",
    out: PathLike | None = None,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> AttackResult: ...

#: One model, a list of models (labelled by file stem or class name), or {label: model}.
ModelsLike = Union[ModelLike, Sequence[ModelLike], dict[str, ModelLike]]

def quantize(
    models: ModelsLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    bits: str | int | Sequence[int] = "8,6,4,3,2",
    per_channel: bool = False,
    include_bias_bn: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    out: PathLike | None = None,
    save: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> pd.DataFrame:
    """Rows of quantize.json: model, bits, granularity, accuracy, loss, float_accuracy."""

def prune(
    models: ModelsLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    sparsity: str | float | Sequence[float] = "0.5,0.7,0.9",
    scope: Literal["global", "layer"] = "global",
    include_bias_bn: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    out: PathLike | None = None,
    save: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> pd.DataFrame:
    """Rows of prune.json: model, sparsity, achieved_sparsity, zeros, weights, scope, accuracy, loss."""

class LandscapeResult:
    #: model, x, y (NaN in 1-D), loss, accuracy.
    points: pd.DataFrame
    #: label, path, csv, tensors, clean_loss, clean_accuracy, min_loss, seconds.
    models: pd.DataFrame
    #: landscape.json's keys (grid, seed, layer, include_bias_bn, dataset, split, images, models).
    summary: dict[str, Any]
    out: str | None

def landscape(
    models: ModelsLike,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "test",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    dims: Literal[1, 2] = 1,
    range: str | tuple[float, float] = "-1:1",
    steps: int = 51,
    layer: str | None = None,
    seed: int = 0,
    include_bias_bn: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    out: PathLike | None = None,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
) -> LandscapeResult: ...

class ExperimentResult:
    """What hart.experiment ran (the CLI's ``hart experiment`` outputs)."""

    #: One dict per architecture × recipe: the groups of summary.json.
    groups: list[dict[str, Any]]
    #: The groups' scalar statistics, one row per group, nested ones as "section.key".
    table: pd.DataFrame
    #: report.html's path (summary.md and summary.json beside it).
    report: str
    #: summary.json (name, config, groups, verdict_table, not_better).
    summary: dict[str, Any]
    #: stage, outcome ("computed" or "cached").
    stages: pd.DataFrame
    #: The lines hart experiment prints after its stage count.
    console: list[str]
    #: The TOML file the engine read (out/config.toml for a dict).
    config: str
    out: str
    #: Stages this call computed (the rest came from the cache).
    @property
    def computed(self) -> int: ...

def experiment(
    config: PathLike | dict[str, Any],
    out: PathLike = "hart-experiment",
    *,
    device: str = "cpu",
    progress: Progress = True,
) -> ExperimentResult:
    """hart experiment CONFIG --out OUT: a TOML path, or a dict written to out/config.toml."""

class TrainLog:
    """A training run's log (the CLI's train.json), set as ``.hart_log`` on what hart.fine_tune returns."""

    #: train.json as a dict.
    log: dict[str, Any]
    #: epoch, loss, accuracy, seconds and the regulariser's per-epoch columns.
    epochs: pd.DataFrame
    #: {"accuracy", "correct", "total", "loss"} on the evaluation images, or None.
    test: dict[str, Any] | None
    test_accuracy: float | None
    #: The trained model file (None when written to a temporary directory).
    out: str | None

M = TypeVar("M", bound=torch.nn.Module)

@overload
def fine_tune(
    model: M,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    eval_data: DataLike | None = None,
    eval_limit: int = 10_000,
    freeze: str | None = None,
    out: PathLike | None = None,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    regularizer: Literal["none", "hessian", "sam", "fd-hessian", "noise", "randbet"] = "none",
    hessian_lambda: float = 0.01,
    hessian_method: Literal["gauss-newton", "hutchinson"] = "gauss-newton",
    hessian_warmup: int = 0,
    hessian_probes: int = 1,
    hessian_every: int = 1,
    hessian_layers: str = "all",
    hessian_selective: bool = False,
    hessian_reading: Literal["diag", "power", "lanczos"] = "lanczos",
    hessian_top_p: int = 50,
    hessian_diag_frac: float = 0.01,
    hessian_batch: int = 0,
    audit_readings: int = 0,
    sam_rho: float = 0.05,
    asam: bool = False,
    fd_sigma: float = 0.01,
    noise_std: float = 0.05,
    noise_kind: Literal["additive", "relative"] = "additive",
    scope: Literal["all", "params", "conv"] = "all",
    params: str | None = None,
    storage: Literal["int8", "int4"] = "int8",
    bit_error_rate: float = 0.01,
    clip_weights: float | None = None,
    clip_relative: bool = False,
) -> M: ...
@overload
def fine_tune(
    model: PathLike | Model,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    eval_data: DataLike | None = None,
    eval_limit: int = 10_000,
    freeze: str | None = None,
    out: PathLike | None = None,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    regularizer: Literal["none", "hessian", "sam", "fd-hessian", "noise", "randbet"] = "none",
    hessian_lambda: float = 0.01,
    hessian_method: Literal["gauss-newton", "hutchinson"] = "gauss-newton",
    hessian_warmup: int = 0,
    hessian_probes: int = 1,
    hessian_every: int = 1,
    hessian_layers: str = "all",
    hessian_selective: bool = False,
    hessian_reading: Literal["diag", "power", "lanczos"] = "lanczos",
    hessian_top_p: int = 50,
    hessian_diag_frac: float = 0.01,
    hessian_batch: int = 0,
    audit_readings: int = 0,
    sam_rho: float = 0.05,
    asam: bool = False,
    fd_sigma: float = 0.01,
    noise_std: float = 0.05,
    noise_kind: Literal["additive", "relative"] = "additive",
    scope: Literal["all", "params", "conv"] = "all",
    params: str | None = None,
    storage: Literal["int8", "int4"] = "int8",
    bit_error_rate: float = 0.01,
    clip_weights: float | None = None,
    clip_relative: bool = False,
) -> Model: ...
@overload
def train(
    model: M,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    eval_data: DataLike | None = None,
    eval_limit: int = 10_000,
    freeze: str | None = None,
    out: PathLike | None = None,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    regularizer: Literal["none", "hessian", "sam", "fd-hessian", "noise", "randbet"] = "none",
    hessian_lambda: float = 0.01,
    hessian_method: Literal["gauss-newton", "hutchinson"] = "gauss-newton",
    hessian_warmup: int = 0,
    hessian_probes: int = 1,
    hessian_every: int = 1,
    hessian_layers: str = "all",
    hessian_selective: bool = False,
    hessian_reading: Literal["diag", "power", "lanczos"] = "lanczos",
    hessian_top_p: int = 50,
    hessian_diag_frac: float = 0.01,
    hessian_batch: int = 0,
    audit_readings: int = 0,
    sam_rho: float = 0.05,
    asam: bool = False,
    fd_sigma: float = 0.01,
    noise_std: float = 0.05,
    noise_kind: Literal["additive", "relative"] = "additive",
    scope: Literal["all", "params", "conv"] = "all",
    params: str | None = None,
    storage: Literal["int8", "int4"] = "int8",
    bit_error_rate: float = 0.01,
    clip_weights: float | None = None,
    clip_relative: bool = False,
) -> M: ...
@overload
def train(
    model: PathLike | Model,
    data: DataLike = "fashion-mnist",
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
    data_dir: PathLike | None = None,
    image_size: int = 224,
    eval_data: DataLike | None = None,
    eval_limit: int = 10_000,
    freeze: str | None = None,
    out: PathLike | None = None,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    progress: Progress = True,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    regularizer: Literal["none", "hessian", "sam", "fd-hessian", "noise", "randbet"] = "none",
    hessian_lambda: float = 0.01,
    hessian_method: Literal["gauss-newton", "hutchinson"] = "gauss-newton",
    hessian_warmup: int = 0,
    hessian_probes: int = 1,
    hessian_every: int = 1,
    hessian_layers: str = "all",
    hessian_selective: bool = False,
    hessian_reading: Literal["diag", "power", "lanczos"] = "lanczos",
    hessian_top_p: int = 50,
    hessian_diag_frac: float = 0.01,
    hessian_batch: int = 0,
    audit_readings: int = 0,
    sam_rho: float = 0.05,
    asam: bool = False,
    fd_sigma: float = 0.01,
    noise_std: float = 0.05,
    noise_kind: Literal["additive", "relative"] = "additive",
    scope: Literal["all", "params", "conv"] = "all",
    params: str | None = None,
    storage: Literal["int8", "int4"] = "int8",
    bit_error_rate: float = 0.01,
    clip_weights: float | None = None,
    clip_relative: bool = False,
) -> Model: ...
