"""HART, the Hessian-Aware Resilience Toolkit, from Python.

The engine behind the ``hart`` command line, on your own torch modules and
tensors::

    import hart
    res = hart.sweep(my_module, "fashion-mnist", limit=200, bits=30)
    hart.campaign(my_module, "fashion-mnist", fault="bitflip", levels=[1e-5, 1e-4]).levels
    res.per_layer        # erratic bits per layer, a pandas DataFrame
    hart.hessian(my_module, "fashion-mnist", split="test", limit=1000).trace

Functions take the CLI's options as snake_case keyword arguments; results
are DataFrames and dicts with the columns and keys of the CLI's files.
Errors are :class:`HartError` subclasses carrying the CLI's one-line message.
Long calls release the GIL, show a tqdm bar (``progress=False`` to hide it)
and stop on Ctrl-C, leaving an ``out=`` directory resumable as the CLI's.
"""

from __future__ import annotations

# torch first: the extension links the libtorch that torch loads, and must
# find it already in the process.
import torch


def _check_torch():
    from importlib import metadata

    try:
        pins = [r for r in (metadata.requires("hart") or []) if r.replace(" ", "").startswith("torch==")]
    except metadata.PackageNotFoundError:  # running from a source tree without metadata
        return
    if not pins:
        return
    need = pins[0].split("==", 1)[1].strip()
    have = torch.__version__.split("+")[0]
    if have != need:
        raise ImportError(
            f"hart needs torch {need} (it links that version's libtorch); this environment has torch {have}"
        )


_check_torch()

from . import _hart  # noqa: E402
from ._api import attack, campaign, evaluate, hessian, sweep  # noqa: E402
from ._compress import LandscapeResult, landscape, prune, quantize  # noqa: E402
from ._errors import (  # noqa: E402
    DataError,
    HartError,
    HartIOError,
    InvalidArgumentError,
    ModelError,
    NotFoundError,
    TorchError,
    UnsupportedOperatorError,
)
from ._experiment import ExperimentResult, experiment  # noqa: E402
from ._model import Model, load  # noqa: E402
from ._results import AttackResult, CampaignResult, HessianResult, SweepResult  # noqa: E402
from ._train import TrainLog, fine_tune, train  # noqa: E402

__version__ = _hart.__version__

__all__ = [
    "AttackResult",
    "CampaignResult",
    "DataError",
    "ExperimentResult",
    "HartError",
    "HartIOError",
    "HessianResult",
    "InvalidArgumentError",
    "LandscapeResult",
    "Model",
    "ModelError",
    "NotFoundError",
    "SweepResult",
    "TorchError",
    "TrainLog",
    "UnsupportedOperatorError",
    "__version__",
    "attack",
    "campaign",
    "evaluate",
    "experiment",
    "fine_tune",
    "hessian",
    "landscape",
    "load",
    "prune",
    "quantize",
    "sweep",
    "train",
]
