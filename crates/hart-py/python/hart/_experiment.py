"""``hart.experiment``: the CLI's ``hart experiment`` (train every
architecture × recipe × seed, measure each trained model, write the report),
on a TOML file or a configuration built as a dict."""

from __future__ import annotations

import json
import os

import pandas as pd

from . import _hart
from ._errors import InvalidArgumentError
from ._progress import Bar


def _plain(value, where="config"):
    """``value`` as JSON the engine can write as TOML: keys as strings, paths
    as strings, tuples as lists, ``None`` (a key left at its default) dropped."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidArgumentError(f"{where}: keys must be strings (got {k!r})")
            if v is not None:
                out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # a NumPy or torch scalar
        return value.item()
    raise InvalidArgumentError(f"{where}: {type(value).__name__} is not a TOML value")


class ExperimentResult:
    """What ``hart.experiment`` ran.

    ``groups``: one dict per architecture × recipe, the groups of
    ``summary.json`` (means and 95% intervals over seeds, paired changes
    against the baseline); ``table``: the groups' scalar statistics as a
    DataFrame (one row per group; nested statistics flattened as
    ``section.key``); ``report``: the path of ``report.html`` (``summary.md``
    and ``summary.json`` beside it); ``summary``: ``summary.json`` as a dict
    (its ``verdict_table``, ``not_better``, ``config``); ``stages``: every
    stage and whether it was ``computed`` or ``cached``; ``console``: the
    lines ``hart experiment`` prints after its stage count; ``config``: the
    TOML file the engine read (``out/config.toml`` for a dict).
    """

    def __init__(self, result, out):
        self.out = out
        self.groups = result["groups"]
        self.report = result["report"]
        self.config = result["config"]
        self.console = result["console"]
        self.stages = pd.DataFrame(result["stages"], columns=["stage", "outcome"])
        with open(os.path.join(out, "summary.json")) as f:
            self.summary = json.load(f)
        self.table = pd.DataFrame([_flatten(g) for g in self.groups])

    @property
    def computed(self):
        """How many stages this call computed (the rest came from the cache)."""
        return int((self.stages["outcome"] == "computed").sum())

    def __repr__(self):
        n = len(self.stages)
        return (
            f"hart.ExperimentResult({self.summary.get('name')!r}: {len(self.groups)} groups, {n} stages "
            f"({self.computed} computed, {n - self.computed} from the cache), report {self.report})"
        )


def _flatten(group, prefix=""):
    row = {}
    for k, v in group.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            row.update(_flatten(v, key + "."))
        elif not isinstance(v, list):
            row[key] = v
    return row


def experiment(config, out="hart-experiment", *, device="cpu", progress=True):
    """The end-to-end comparison, as ``hart experiment CONFIG --out OUT``:
    trains every architecture × recipe × seed of ``config``, runs every
    configured measurement on each trained model, and writes ``report.html``,
    ``summary.md``, ``summary.json``, ``plots/`` and the stage cache into
    ``out`` (default ``hart-experiment``, as the CLI's). Rerunning with the
    same ``out`` computes only the stages whose inputs changed.

    ``config``: a TOML file's path (as the CLI takes it), or the
    configuration as a dict with the file's tables and keys (``{"name": …,
    "archs": [...], "data": {...}, "recipe": [{...}, ...], ...}``; ``None``
    values are left out, i.e. at their defaults), which is written to
    ``out/config.toml`` (overwriting it) and read from there, so errors name
    that file's lines and the CLI can rerun it. ``device``: the CLI's
    ``--device``. Sharding (``--shard``, ``--phase``, ``--emit-sbatch``) is
    the CLI's alone.

    Returns a :class:`hart.ExperimentResult`.
    """
    out = os.fspath(out)
    if isinstance(config, dict):
        kwargs = dict(config_json=json.dumps(_plain(config)))
    elif isinstance(config, (str, os.PathLike)):
        if not os.path.exists(config):
            from ._errors import NotFoundError

            raise NotFoundError(f"{os.fspath(config)}: no such experiment config")
        kwargs = dict(config=os.fspath(config))
    else:
        raise InvalidArgumentError(
            f"config must be a TOML file's path or a dict (got {type(config).__name__})"
        )
    with Bar("experiment", progress) as bar:
        result = _hart.experiment(out, device=device, progress=bar, **kwargs)
    return ExperimentResult(json.loads(result), out)
